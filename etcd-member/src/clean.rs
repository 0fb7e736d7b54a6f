//! `clean` on a failed node: the runbook's `rm -rf` done safely. The manifest leaves the manifests
//! dir for the backup dir (the kubelet stops etcd), the stopped containers are removed, and the
//! data dir is moved aside. Nothing is deleted.

use anyhow::Result;
use common::backup;
use common::cli::{self, HasShared};
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::nodelock::NodeLock;
use common::report::{MemberStatus, NodeClean, Plan};
use common::runtime::Crictl;
use std::path::PathBuf;

/// What to do instead of a clean when the cluster has no quorum.
const QUORUM_ADVICE: &str = "this node's data dir may be the most up to date one the recovery needs; run \
    etcd-quorum inspect here and on the other nodes, then etcd-quorum pick (--force to clean all the same)";

common::with_shared_flags! {
    changing
    /// on a failed node: move its manifest and data dir aside and remove its etcd container
    #[argh(
        subcommand,
        name = "clean",
        example = "On the failed node (its member removed, or not answering):\n  $ etcd-member clean --dry-run\n  $ etcd-member clean --yes"
    )]
    pub struct CleanArgs {
        /// where backups go; a UTC-timestamped dir is made in it (default <rootfs>/var/lib/etcd-recovery)
        #[argh(option)]
        pub backup_dir: Option<String>,
        /// the data dir when there is no readable manifest (default <rootfs>/var/lib/etcd); a manifest's
        /// own is the only one it takes
        #[argh(option)]
        pub data_dir: Option<String>,
        /// how long to wait for the kubelet to stop etcd (default 60s)
        #[argh(option, default = "String::from(\"60s\")")]
        pub timeout: String,
        /// clean even while this node's member answers, or without a working crictl
        #[argh(switch)]
        pub force: bool,
    }
}

/// Who this node's member is: as the manifest names it, or, with no manifest to say, the member
/// its data dir's WAL was written by (a member removed since is in no list, which is an answer).
enum Own {
    Named {
        name: String,
        peers: String,
    },
    /// The member ID and the cluster ID the WAL records.
    Recorded(String, String),
}

impl Own {
    fn find<'a>(&self, members: &'a [MemberStatus]) -> Option<&'a MemberStatus> {
        match self {
            Own::Named { name, peers } => common::cluster::own_member(members, name, peers),
            Own::Recorded(id, _) => members.iter().find(|x| common::report::same_id(&x.id, id)),
        }
    }

    fn not_found(&self) -> String {
        match self {
            Own::Named { name, peers } => format!("no member named {name:?} or with peer URL {peers}"),
            Own::Recorded(id, _) => format!("no member {id} (whose data this is) in the cluster"),
        }
    }

    /// Members of another cluster answered (an `ETCDCTL_ENDPOINTS` left in the shell): that this
    /// data's member is not among them says nothing, nor does their quorum.
    fn foreign(&self, s: &common::report::ClusterStatus) -> Option<String> {
        match self {
            Own::Recorded(_, cluster)
                if !s.cluster_id.is_empty() && !common::report::same_id(&s.cluster_id, cluster) =>
            {
                Some(format!("the members that answered are of cluster {}, this data dir's is {cluster}", s.cluster_id))
            }
            _ => None,
        }
    }
}

fn recorded_member(data_dir: &std::path::Path) -> std::result::Result<Own, String> {
    common::disk::inspect::read_wal(&data_dir.join("member/wal"))
        .map(|w| Own::Recorded(common::report::hex_id(w.member_id), common::report::hex_id(w.cluster_id)))
        .map_err(|e| format!("no manifest, and {}: {e}", data_dir.display()))
}

pub fn run(args: CleanArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let timeout = cli::timeout_flag("timeout", &args.timeout)?;
    let mut lock = NodeLock::unless_dry_run(args.dry_run, &shared.manifest)?;
    let manifest_present = shared.manifest.exists();
    // A broken manifest is one reason to clean a node: it still goes aside, the data dir then
    // comes from --data-dir or the kubeadm default. But then nothing tells whether the member it
    // runs still answers, nor where its data really is: that takes --force.
    let mut unreadable = None;
    let manifest = if manifest_present {
        Manifest::load(&shared.manifest).map_err(|e| unreadable = Some(format!("{e:#}"))).ok()
    } else {
        None
    };
    let root = backup::backup_root(&shared, args.backup_dir.as_deref());
    // No manifest: a clean killed after moving it aside is finished from the manifest it left in
    // its backup dir (the data dir it names, that same backup dir).
    let resumed = if manifest_present || args.data_dir.is_some() {
        None
    } else {
        common::backup::last_cleaned_manifest(&root)
            .and_then(|p| Some((p.parent()?.to_path_buf(), Manifest::load(&p).ok()?)))
    };
    // The manifest's is the dir etcd uses: another one moved aside would leave etcd's in place.
    let named = manifest
        .as_ref()
        .or(resumed.as_ref().map(|r| &r.1))
        .map(|m| m.data_dir_matching(args.data_dir.as_deref(), &shared.rootfs))
        .transpose()?;
    let data_dir = match (&args.data_dir, named) {
        (_, Some(n)) => n,
        (Some(d), None) => PathBuf::from(d),
        (None, None) => common::manifest::default_data_dir(&shared.rootfs),
    };
    let resumed_dir =
        resumed.map(|r| r.0).filter(|d| data_dir.exists() && data_dir.file_name().is_some_and(|n| !d.join(n).exists()));

    let mut plan = Plan::new("etcd-member clean");
    common::manifest::rivals_check(&mut plan, &shared.manifest);
    if let Some(m) = &manifest {
        common::manifest::hidden_check(
            &mut plan,
            m,
            args.force.then_some("--force: the manifest and the data dir it names go aside all the same"),
        );
    }
    if let Some(e) = &unreadable {
        plan.check(
            "manifest readable",
            args.force,
            format!(
                "{e}: whether its member still answers cannot be checked, and the data dir would be {} \
                 (--data-dir to name it, --force to go on)",
                data_dir.display()
            ),
        );
    }
    // What a recovery after a quorum loss may need: a member's data (a dir lost with its disk is not).
    let has_data = data_dir.join("member").is_dir();
    // Guard: never clean a node whose member still answers. Who it is comes from the manifest,
    // else from the member data itself: a node without a manifest (gone, or --manifest naming
    // the wrong file) may still run that member.
    let identity = match &manifest {
        Some(m) => Some(Ok(Own::Named {
            name: m.flag("name").unwrap_or_default(),
            peers: m.flag("initial-advertise-peer-urls").unwrap_or_default(),
        })),
        None if has_data => Some(recorded_member(&data_dir)),
        None => None,
    };
    // Unknown is not down: a TLS failure or a survey that could not run (a missing certificate)
    // says nothing about whether the member is alive.
    let unknown = |why: String| (args.force, format!("cannot tell whether it answers: {why}"));
    if let Some(Err(why)) = &identity {
        let (ok, detail) = unknown(why.clone());
        plan.check("this node's member does not answer", ok, detail);
    }
    if let Some(Ok(own)) = &identity {
        // The members this node's db knew are asked too when nothing at the manifest's addresses
        // answers (kubeadm's first node names itself alone).
        match common::cluster::survey_with_known(&shared, manifest.as_ref(), &data_dir) {
            Ok(s) if let Some(why) = own.foreign(&s.status) => {
                let (ok, detail) = unknown(why);
                plan.check("this node's member does not answer", ok, detail);
            }
            Ok(s) if !s.nobody_answered() => {
                let me = own.find(&s.status.members);
                let tls = s.tls_failures();
                let (ok, detail) = match me {
                    Some(x) if x.endpoint.reachable => {
                        let why = format!("member {} ({}) answers at {}", x.name, x.id, x.endpoint.url);
                        // Taking a live member down is a choice (before a restore of every node).
                        (
                            args.force,
                            format!("{why}{}", if args.force { "" } else { "; --force takes it down all the same" }),
                        )
                    }
                    Some(x) if tls.iter().any(|f| f.starts_with(&format!("{}: ", x.endpoint.url))) => {
                        unknown(format!("TLS failed: {}; check --cacert/--cert/--key", tls.join("; ")))
                    }
                    Some(x) => (
                        true,
                        format!(
                            "member {} ({}) is listed but unreachable: remove it with etcd-member remove",
                            x.name, x.id
                        ),
                    ),
                    None => (true, own.not_found()),
                };
                plan.check("this node's member does not answer", ok, detail);
                // After a quorum loss this node's data may be the most up to date one: moved
                // aside, etcd-quorum inspect no longer finds it and pick chooses another.
                let q = &s.status.quorum;
                let lost =
                    format!("quorum lost ({} of {} voters answer, {} needed)", q.reachable_voters, q.voters, q.needed);
                let detail = match (q.has_quorum, has_data) {
                    (true, _) => format!("{} of {} voters answer", q.reachable_voters, q.voters),
                    (false, true) => format!("{lost}: {QUORUM_ADVICE}"),
                    (false, false) => format!("{lost}; no data of a member here to keep"),
                };
                plan.check("the cluster has a quorum", q.has_quorum || args.force || !has_data, detail);
            }
            Ok(s) => {
                let tls = s.tls_failures();
                let (ok, detail) = if tls.is_empty() {
                    let why = format!("no endpoint answered ({})", s.describe_failures());
                    match has_data {
                        true => (args.force, format!("{why}: {QUORUM_ADVICE}; --endpoints names members to ask")),
                        false => (true, format!("{why}; no data of a member here to keep")),
                    }
                } else {
                    unknown(format!("TLS failed: {}; check --cacert/--cert/--key", tls.join("; ")))
                };
                plan.check("this node's member does not answer", ok, detail);
            }
            Err(e) => {
                let (ok, detail) = unknown(format!("the cluster could not be asked: {e:#}"));
                plan.check("this node's member does not answer", ok, detail);
            }
        }
    }
    let crictl = Crictl::new(&shared.crictl);
    let listed =
        crictl.plan_check(&mut plan, args.force.then_some("--force: go on without knowing whether etcd stopped"));
    let crictl_works = listed.is_some();
    let containers = listed.unwrap_or_default();
    if manifest_present {
        plan.step("move manifest", format!("{} -> {}/<timestamp>/", shared.manifest.display(), root.display()), true);
    }
    plan.step("wait", format!("until the kubelet has stopped etcd (at most {timeout:?})"), false);
    for c in &containers {
        plan.step("crictl rm", format!("{} ({})", c.id, c.state), true);
    }
    let data_present = data_dir.exists();
    if data_present {
        let to = resumed_dir.as_ref().map_or(format!("{}/<timestamp>/", root.display()), |d| {
            format!("{}/ (where the interrupted clean put the manifest)", d.display())
        });
        plan.step("move data dir", format!("{} -> {to}", data_dir.display()), true);
    }
    if manifest_present || data_present {
        backup::writable_check(&mut plan, &root);
    }
    if data_present {
        backup::movable_check(&mut plan, &data_dir);
    }
    if let Some(code) = cli::plan_gate(&plan, shared.output, args.dry_run)? {
        return Ok(code);
    }
    let mut done = NodeClean { kind: "NodeClean".into(), ..Default::default() };
    if !manifest_present && containers.is_empty() && !data_present {
        lock.tidy();
        common::say!("etcd-member: nothing to clean");
        cli::emit(&done, shared.output, render);
        return Ok(exit::OK);
    }
    cli::confirm(args.yes, &format!("clean this node (manifest and {} moved aside)", data_dir.display()))?;
    lock.begin();

    let backup_dir = match resumed_dir {
        Some(d) => d,
        None => backup::new_backup_dir(&root)?,
    };
    if manifest_present {
        let to = backup::move_aside(&shared.manifest, &backup_dir)?;
        common::say!("etcd-member: manifest moved to {}", to.display());
        done.manifest_backup = Some(to.display().to_string());
        common::failpoint::hit("clean-manifest-moved");
    }
    // The kubelet stops the pod once its manifest is gone; wait for every etcd container to exit,
    // and for etcd to let go of its db. Without a working crictl only --force gets here: then the
    // db's lock alone says whether etcd stopped.
    let untouched = |why: String| {
        coded(
            exit::TIMEOUT,
            format!("{why}; manifest is in {}, data dir {} untouched", backup_dir.display(), data_dir.display()),
        )
    };
    let containers = if crictl_works {
        crictl.wait_stopped_on(timeout, &data_dir).map_err(untouched)?
    } else {
        common::say!("etcd-member: crictl does not work: waiting on etcd's db lock alone (--force)");
        common::runtime::wait_db_released(&data_dir, std::time::Instant::now() + timeout).map_err(untouched)?;
        vec![]
    };
    // From here on a failure says where the manifest went (running clean again finishes the job).
    let said = |e: anyhow::Error| {
        let at = done.manifest_backup.as_deref().map(|m| format!("the manifest is in {m}; ")).unwrap_or_default();
        exit::with_state(e, format!("{at}run clean again to finish"))
    };
    common::failpoint::hit("clean-stopped");
    for c in &containers {
        // Its log goes with it: kept beside the manifest, it tells why the member failed.
        let log = backup_dir.join(format!("etcd-container-{}.log", c.short_id()));
        match crictl.save_logs(&c.id, &log) {
            Ok(()) => done.container_logs.push(log.display().to_string()),
            Err(e) => common::say!("etcd-member: warning: the log of container {} is not kept: {e:#}", c.id),
        }
        crictl.remove(&c.id).map_err(said)?;
        done.container_removed.push(c.id.clone());
    }
    common::failpoint::hit("clean-containers-removed");
    if data_present {
        let to = backup::move_aside(&data_dir, &backup_dir).map_err(said)?;
        common::say!("etcd-member: data dir moved to {}", to.display());
        done.data_dir_backup = Some(to.display().to_string());
    }
    cli::emit(&done, shared.output, render);
    Ok(exit::OK)
}

fn render(c: &NodeClean) -> String {
    let or_none = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    format!(
        "manifest backup: {}\ndata dir backup: {}\ncontainers removed: {}\ntheir logs: {}\n",
        or_none(&c.manifest_backup),
        or_none(&c.data_dir_backup),
        if c.container_removed.is_empty() { "-".into() } else { c.container_removed.join(", ") },
        if c.container_logs.is_empty() { "-".into() } else { c.container_logs.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::cluster::own_member;

    fn member(name: &str, id: &str, host: &str, reachable: bool) -> MemberStatus {
        let mut m = MemberStatus {
            member: common::report::MemberRef {
                id: id.into(),
                name: name.into(),
                peer_urls: vec![format!("https://{host}:2380")],
                ..Default::default()
            },
            started: true,
            endpoint: Default::default(),
        };
        m.endpoint.reachable = reachable;
        m
    }

    /// A dead member and a live one share this node's name (etcd lists them by ID): the one with
    /// this node's peer URL decides, whichever is listed first.
    #[test]
    fn this_nodes_member_is_found_by_its_peer_url() {
        let dead = member("node3", "a3", "10.0.0.3", false);
        let live = member("node3", "b3", "10.0.0.9", true);
        for list in [vec![dead.clone(), live.clone()], vec![live.clone(), dead.clone()]] {
            // The rebuilt node (10.0.0.9) finds its live member; the old host (10.0.0.3) its dead one.
            assert_eq!(own_member(&list, "node3", "https://10.0.0.9:2380").unwrap().id, "b3");
            assert_eq!(own_member(&list, "node3", "https://10.0.0.3:2380").unwrap().id, "a3");
        }
        // Several peer URLs in the flag: any of them.
        let list = [dead.clone(), live.clone()];
        assert_eq!(own_member(&list, "node3", "https://10.0.0.7:2380,https://10.0.0.9:2380").unwrap().id, "b3");
        // By name only (the peer URL changed): one that answers first, whatever the order.
        assert_eq!(own_member(&list, "node3", "https://10.0.0.7:2380").unwrap().id, "b3");
        let list = [member("node1", "a1", "10.0.0.1", true), dead.clone()];
        assert_eq!(own_member(&list, "node3", "https://10.0.0.7:2380").unwrap().id, "a3", "by name");
        assert_eq!(own_member(&list, "", "https://10.0.0.3:2380").unwrap().id, "a3");
        assert!(own_member(&list, "node4", "https://10.0.0.4:2380").is_none());
    }

    /// With no manifest, the data's member is found by ID, and only among members of its cluster.
    #[test]
    fn a_recorded_member_is_looked_for_in_its_own_cluster() {
        let own = Own::Recorded("00000000000000b3".into(), "00000000000000c1".into());
        let list = vec![
            member("node1", "00000000000000a1", "10.0.0.1", true),
            member("x", "00000000000000b3", "10.0.0.9", true),
        ];
        assert_eq!(own.find(&list).unwrap().name, "x", "by ID, whatever its name");
        let status = |cluster: &str| common::report::ClusterStatus {
            kind: "ClusterStatus".into(),
            taken_at: String::new(),
            cluster_id: cluster.into(),
            leader: String::new(),
            members: list.clone(),
            alarms: vec![],
            quorum: Default::default(),
            local: None,
            warnings: vec![],
        };
        assert_eq!(own.foreign(&status("c1")), None, "the same cluster, however spelled");
        let other = own.foreign(&status("00000000000000c2")).unwrap();
        assert!(other.contains("of cluster 00000000000000c2, this data dir's is 00000000000000c1"), "{other}");
        assert_eq!(Own::Named { name: "n".into(), peers: String::new() }.foreign(&status("c2")), None);
    }
}
