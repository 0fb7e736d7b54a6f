//! `recover` on the chosen survivor: the runbook's loss-of-quorum procedure through the static
//! manifest. `--force-new-cluster` goes in (atomic edit), the kubelet restarts etcd as a one-member
//! cluster, the flag comes out again (atomic edit), etcd restarts healthy. The flag never stays:
//! any failure after it went in takes it out before exiting, and a run that finds it in the
//! manifest (an interrupted recovery) finishes by taking it out.

use crate::inspect::inspection;
use anyhow::{Result, anyhow};
use common::backup;
use common::cli::{self, HasShared, Shared};
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::nodelock::NodeLock;
use common::report::{Plan, QuorumRecovery};
use common::runtime::Crictl;
use std::path::Path;
use std::time::{Duration, Instant};

common::with_shared_flags! {
    changing
    /// recover this survivor as a one-member cluster (--force-new-cluster in the manifest, then out)
    #[argh(
        subcommand,
        name = "recover",
        example = "On the survivor pick chose:\n  $ etcd-quorum recover --dry-run\n  $ etcd-quorum recover --yes"
    )]
    pub struct RecoverArgs {
        /// the data dir: the manifest's --data-dir (the default; another is a usage error)
        #[argh(option)]
        pub data_dir: Option<String>,
        /// where the data dir copy goes (default <rootfs>/var/lib/etcd-recovery)
        #[argh(option)]
        pub backup_dir: Option<String>,
        /// do not copy the data dir first
        #[argh(switch)]
        pub no_backup: bool,
        /// recover even though a majority of voters answers (splits the cluster) or the WAL looks corrupt:
        /// only if you know why
        #[argh(switch)]
        pub force: bool,
        /// how long each restart may take (default 120s)
        #[argh(option, default = "String::from(\"120s\")")]
        pub timeout: String,
        /// instead of --force-new-cluster: restore this member's own db (new cluster ID), as the etcd
        /// maintainers favour; keeps only what was applied to the db
        #[argh(switch)]
        pub via_restore: bool,
        /// with --via-restore: raise the revision by N (needs --mark-compacted), so watchers are not
        /// fooled by revisions going back
        #[argh(option)]
        pub bump_revision: Option<u64>,
        /// with --via-restore: mark the revisions before the bump as compacted
        #[argh(switch)]
        pub mark_compacted: bool,
        /// the member ID a surviving learner still names as leader is gone (its node is down): the
        /// one check it lifts (a learner keeps naming its last leader); may be given more than once
        #[argh(option)]
        pub leader_gone: Vec<String>,
    }
}

/// `--via-restore`: this member's `member/snap/db` copied aside, then restored into this node
/// through etcd-restore's swap (hash check skipped: a live db has no trailer).
fn via_restore(
    args: &RecoverArgs,
    shared: &Shared,
    dir: &Path,
    before: &common::report::DataDirInspection,
    others: Vec<String>,
    lock: &mut NodeLock,
) -> Result<u8> {
    use argh::FromArgs;
    let root = backup::backup_root(shared, args.backup_dir.as_deref());
    let copy = if args.dry_run {
        dir.join("member/snap/db")
    } else {
        // Asked before anything is written: a refusal leaves no copy behind.
        cli::confirm(args.yes, &format!("restore {} from its own db as a one-member cluster", before.member_id))?;
        lock.begin();
        let b = backup::new_backup_dir(&root)?;
        let to = b.join("db");
        std::fs::copy(dir.join("member/snap/db"), &to)
            .map_err(|e| anyhow!("copy {}/member/snap/db: {e}", dir.display()))?;
        to
    };
    let snapshot = copy.display().to_string();
    let mut argv = vec!["--swap", "--snapshot", &snapshot, "--skip-hash-check", "--timeout", &args.timeout];
    let bump = args.bump_revision.map(|b| b.to_string());
    if let Some(b) = &bump {
        argv.extend(["--bump-revision", b]);
    }
    if args.mark_compacted {
        argv.push("--mark-compacted");
    }
    // Confirmed above (or a dry run).
    argv.push(if args.dry_run { "--dry-run" } else { "--yes" });
    let mut r = etcd_restore::Args::from_args(&["etcd-restore"], &argv)
        .map_err(|e| coded(exit::USAGE, e.output.trim().to_string()))?;
    let flags = args.shared_flags();
    (r.endpoints, r.cacert, r.cert, r.key) = (flags.endpoints, flags.cacert, flags.cert, flags.key);
    (r.dial_timeout, r.command_timeout, r.write_out) = (flags.dial_timeout, flags.command_timeout, flags.write_out);
    (r.rootfs, r.manifest, r.crictl, r.backup_dir) =
        (flags.rootfs, flags.manifest, flags.crictl, args.backup_dir.clone());
    // The live-majority check was recover's, overridden or not by its own --force.
    r.force = args.force;
    let done = match etcd_restore::swap(&r, shared, &snapshot)? {
        etcd_restore::Swapped::Planned(code) => return Ok(code),
        etcd_restore::Swapped::Done(doc) => doc,
    };
    let doc = QuorumRecovery {
        kind: "QuorumRecovery".into(),
        survivor: label(before),
        steps: vec![
            format!("member/snap/db copied to {snapshot}"),
            format!(
                "restored into {} as member {} of new cluster {}, revision {}{}",
                done.data_dir,
                done.member_id,
                done.cluster_id,
                done.revision,
                done.bumped_revision.map(|b| format!(" bumped to {b}")).unwrap_or_default()
            ),
        ],
        members_to_rejoin: others,
        manifest_restored: true,
        backup: Some(snapshot),
    };
    cli::emit(&doc, shared.output, render);
    Ok(exit::OK)
}

fn render(d: &QuorumRecovery) -> String {
    let mut out = format!("recovered {} as a one-member cluster\n", d.survivor);
    for s in &d.steps {
        out += &format!("  - {s}\n");
    }
    if !d.members_to_rejoin.is_empty() {
        out += &format!(
            "now, on each of {}: etcd-member clean --yes, then etcd-member join --yes\n",
            d.members_to_rejoin.join(", ")
        );
    }
    out
}

/// Copies a directory tree (files through the kernel's copy: reflinks where the filesystem has
/// them), each file fsynced. Symlinks are followed: a `member/wal` linked to another disk is data
/// too. Anything else (a socket, a dangling link) is an error, not a silent gap in the copy.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    common::backup::private_dir(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        let meta = std::fs::metadata(e.path())
            .map_err(|err| std::io::Error::new(err.kind(), format!("{}: {err}", e.path().display())))?;
        if meta.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else if meta.is_file() {
            std::fs::copy(e.path(), &dest)?;
            std::fs::File::open(&dest)?.sync_all()?;
        } else {
            return Err(std::io::Error::other(format!("{}: not a file or dir", e.path().display())));
        }
    }
    std::fs::File::open(to)?.sync_all()
}

/// The db applied entries past the WAL's last commit index (commit-only HardStates are written
/// unsynced, so a crash commonly leaves it one or two behind), and the image's etcd is a 3.5
/// before 3.5.22 or 3.6.0 (etcd PR 20055): the forced start appends its removals of the other members from
/// the commit index, and those at indexes the db applied already are skipped in the db, which
/// keeps listing them (etcd 3.6 reads its membership from there). Said, not refused: the
/// cluster works, and `--via-restore` avoids it at the price of new IDs.
fn removals_skipped(d: &common::report::DataDirInspection, image: &str) -> Option<String> {
    let release = common::manifest::etcd_release(image);
    // etcd 3.4 removes a member from the db whatever the index (the skip came with 3.5).
    let fixed = (release < (3, 5, 0) && release != (0, 0, 0))
        || ((3, 5, 22)..(3, 6, 0)).contains(&release)
        || release >= (3, 6, 1);
    (d.applied_index > d.commit_index && !fixed).then(|| {
        format!(
            "the db applied entry {} past the WAL's commit index {}, and etcd {} (image {image}) forces the new \
             cluster from the commit index: its removals of the other members at indexes up to {} are skipped \
             in the db, which keeps listing them (fixed in etcd 3.5.22 and 3.6.1; --via-restore avoids it)",
            d.applied_index,
            d.commit_index,
            match release {
                (0, 0, 0) => "of an unknown version".to_string(),
                (a, b, c) => format!("{a}.{b}.{c}"),
            },
            d.applied_index
        )
    })
}

/// The members other than `own` that the db of a running member still lists.
fn listed_in_db(dir: &Path, own: &str) -> Vec<String> {
    let Ok(db) = common::disk::inspect::read_db(&dir.join("member/snap/db")) else { return vec![] };
    db.members
        .iter()
        .filter(|m| !common::report::same_id(&common::report::hex_id(m.id), own))
        .map(|m| match m.name.is_empty() {
            true => common::report::hex_id(m.id),
            false => format!("{} ({})", m.name, common::report::hex_id(m.id)),
        })
        .collect()
}

/// Waits until the kubelet runs a new etcd container (`is_new`), then until it answers.
fn wait_restart(
    crictl: &Crictl,
    is_new: impl Fn(&common::runtime::Container) -> bool,
    shared: &Shared,
    url: &str,
    timeout: Duration,
) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    'restart: loop {
        let started = loop {
            if let Ok(Some(c)) = crictl.find_etcd()
                && c.running()
                && is_new(&c)
            {
                break c;
            }
            if Instant::now() >= deadline {
                return Err(coded(exit::TIMEOUT, format!("the kubelet did not restart etcd within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let revision = common::cluster::wait_member(shared, url, left)?.1;
        // Settled only if no other container follows: the kubelet may have read an older version
        // of the manifest before our write and started its container after it (so it passes as
        // new); the container of our version then replaces it within a sync period.
        let settle = Instant::now() + SETTLE;
        while Instant::now() < settle {
            match crictl.find_etcd() {
                Ok(Some(c)) if c.id == started.id && c.running() => {}
                Ok(_) if Instant::now() < deadline => continue 'restart,
                Ok(_) => break,
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        return Ok(revision);
    }
}

/// How long a restarted etcd's container must stay the newest before the restart counts as done:
/// a few of the kubelet's sync periods.
const SETTLE: Duration = Duration::from_secs(3);

/// When the manifest was last written (ns since the epoch, as crictl's `createdAt`): a container
/// created after it runs that manifest (or a later one). Pod UIDs cannot tell: a static pod's UID
/// is a hash of its manifest, so writing the flag in a second time gives the first time's UID.
fn written_at(manifest: &Path) -> u128 {
    std::fs::metadata(manifest)
        .and_then(|m| m.modified())
        .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos())
        .unwrap_or(0)
}

/// The survivor as people know it: its name, or its ID when it has none.
fn label(before: &common::report::DataDirInspection) -> String {
    if before.name.is_empty() { before.member_id.clone() } else { before.name.clone() }
}

/// etcd's `--election-timeout` (ms) from the manifest; etcd's default 1 s.
fn election_timeout(manifest: &Manifest) -> Duration {
    Duration::from_millis(manifest.flag("election-timeout").and_then(|v| v.parse().ok()).unwrap_or(1000))
}

/// A rerun after the recovery finished: nothing to force, nothing changed.
fn done_already(
    args: &RecoverArgs,
    shared: &Shared,
    survivor: String,
    detail: String,
    others: Vec<String>,
) -> Result<u8> {
    if args.dry_run {
        return cli::nothing_to_do("etcd-quorum recover", detail, shared.output);
    }
    common::say!("etcd-quorum: {detail}; nothing to do");
    let doc = QuorumRecovery {
        kind: "QuorumRecovery".into(),
        survivor,
        steps: vec![],
        members_to_rejoin: others,
        manifest_restored: true,
        backup: None,
    };
    cli::emit(&doc, shared.output, render);
    Ok(exit::OK)
}

/// Waits (up to `timeout`, 20 s at most) until `url` lists no voter but `own`: a forced start
/// answers before it has applied the removals it appended at boot, so a list asked at once may
/// still name the old members (seen on a loaded machine). What is listed then is checked by the
/// caller; the bound keeps a real failure from holding the flag in for long.
fn others_gone(shared: &Shared, url: &str, own: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout.min(Duration::from_secs(20));
    while Instant::now() < deadline {
        let others = members_of(shared, url)
            .map(|l| l.iter().any(|m| !m.is_learner && !common::report::same_id(&m.id, own)))
            .unwrap_or(true);
        if !others {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The member list as this member alone sees it.
fn members_seen_by(shared: &Shared, url: &str) -> Result<Vec<String>> {
    Ok(members_of(shared, url)?.iter().map(|m| if m.name.is_empty() { m.id.clone() } else { m.name.clone() }).collect())
}

/// The member list as `url` answers it.
fn members_of(shared: &Shared, url: &str) -> Result<Vec<common::report::MemberStatus>> {
    let mut only = shared.clone();
    only.endpoints = Some(vec![url.to_string()]);
    let s = common::cluster::survey(&only, None)?;
    // Unanswered, the survey's list is only the endpoint itself: that is no answer.
    if s.nobody_answered() {
        return Err(s.unreachable());
    }
    Ok(s.status.members)
}

/// The learners a forced start kept beside this member, removed through it: etcd before 3.5.25
/// and 3.6.6 removes only the voters of its snapshot (etcd PR 20896), so a learner the last
/// `.snap` names stays listed. It is of the old cluster, as the removed voters are; what the
/// forced start meant to do is finished. What was done goes into `steps`.
fn remove_kept_learners(shared: &Shared, url: &str, own: &str, steps: &mut Vec<String>) -> Result<()> {
    let members = members_of(shared, url)?;
    let (learners, voters): (Vec<_>, Vec<_>) =
        members.iter().filter(|m| !common::report::same_id(&m.id, own)).partition(|m| m.is_learner);
    if learners.is_empty() || !voters.is_empty() {
        return Ok(());
    }
    let dialer = common::client::Dialer::new(shared, url.starts_with("https://"))?;
    let rt = common::client::runtime()?;
    let mut removed = Vec::new();
    for l in learners {
        let id = common::report::parse_hex_id(&l.id).ok_or_else(|| anyhow!("learner ID {:?}", l.id))?;
        rt.block_on(async {
            let mut c = dialer.connect(url).await?;
            dialer.call(c.member_remove(id)).await
        })
        .map_err(|e| anyhow!("remove learner {} kept by the forced start: {}", l.label(), e.message))?;
        removed.push(l.label());
    }
    let done = format!(
        "learner {} kept by the forced start removed (etcd before 3.5.25 keeps the learners of its snapshot)",
        removed.join(", ")
    );
    common::say!("etcd-quorum: {done}");
    steps.push(done);
    Ok(())
}

pub fn run(args: RecoverArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    cli::check_bump(args.bump_revision, args.mark_compacted)?;
    if (args.bump_revision.is_some() || args.mark_compacted) && !args.via_restore {
        return Err(coded(exit::USAGE, "--bump-revision and --mark-compacted go with --via-restore"));
    }
    let timeout = cli::timeout_flag("timeout", &args.timeout)?;
    // Before anything is looked at; --via-restore's swap runs under it too.
    let mut lock = NodeLock::unless_dry_run(args.dry_run, &shared.manifest)?;
    let mut manifest = Manifest::load(&shared.manifest)?;
    // The data dir the forced etcd runs on is the one inspected and copied.
    let dir = manifest.data_dir_matching(args.data_dir.as_deref(), &shared.rootfs)?;
    let url = manifest
        .client_urls()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("manifest {}: no client URL", manifest.path.display()))?;
    let crictl = Crictl::new(&shared.crictl);
    let mut steps = Vec::new();
    let interrupted = manifest.force_new_cluster();
    let before = inspection(&dir, Some(&manifest))?;
    let others: Vec<String> = before
        .members
        .iter()
        .filter(|m| m.id != before.member_id)
        .map(|m| if m.name.is_empty() { m.id.clone() } else { m.name.clone() })
        .collect();

    let mut plan = Plan::new("etcd-quorum recover");
    if interrupted {
        // Finished whatever else is wrong: no check below may keep the flag in.
        plan.check(
            "an interrupted recovery",
            true,
            format!("--force-new-cluster is in {}: it will be taken out", manifest.path.display()),
        );
    } else {
        common::manifest::rivals_check(&mut plan, &shared.manifest);
        common::manifest::hidden_check(&mut plan, &manifest, None);
        // The restarts are seen through crictl: without it a forced etcd would pass for none.
        crictl.plan_check(&mut plan, None);
        // This node's etcd may be down: then the members its db knows are asked.
        let mut survey = common::cluster::survey_with_known(&shared, Some(&manifest), &dir)?;
        // Two states that settle within two election timeouts: a member that has just lost its
        // peers still names their leader (one of a working majority goes on naming it), and this
        // member, just restarted alone (a recovery that finished), has not elected itself yet.
        let st = &survey.status;
        let naming_a_lost_leader = !st.leader.is_empty() && !st.quorum.has_quorum;
        let electing_itself = matches!(st.members.as_slice(), [only] if only.endpoint.reachable
            && st.leader.is_empty() && common::report::same_id(&only.member.id, &before.member_id));
        if naming_a_lost_leader || electing_itself {
            let wait = 2 * election_timeout(&manifest) + Duration::from_secs(1);
            let what = match naming_a_lost_leader {
                true => format!("a member still follows leader {} while too few answer", st.leader),
                false => "this member answers alone without a leader yet".to_string(),
            };
            common::say!("etcd-quorum: {what}; asking again in {wait:?}");
            std::thread::sleep(wait);
            survey = common::cluster::survey_with_known(&shared, Some(&manifest), &dir)?;
        }
        let st = &survey.status;
        // Done already (a finished run, a rerun): this member leads a cluster of its own.
        // Not when etcd's env may force it (the plan refuses that), nor beside a rival manifest.
        if let [only] = st.members.as_slice()
            && common::report::same_id(&only.member.id, &before.member_id)
            && only.endpoint.reachable
            && only.endpoint.is_leader
            && plan.failed().is_empty()
        {
            lock.tidy();
            let detail = format!("{} already runs as a one-member cluster; the flag is out", only.label());
            return done_already(&args, &shared, label(&before), detail, others);
        }
        let q = st.quorum;
        // Answering counts, leader or not: a majority cut off from each other (peer network,
        // expired peer certificates) comes back as a cluster of its own once that is fixed.
        let majority_answers = q.voters > 0 && q.reachable_voters >= q.needed;
        plan.check(
            "a majority of voters is NOT reachable",
            !majority_answers || args.force,
            if q.has_quorum {
                format!(
                    "{} of {} voters answer: forcing a new cluster next to a live majority splits it",
                    q.reachable_voters, q.voters
                )
            } else if majority_answers {
                format!(
                    "{} of {} voters answer without a leader: fix their peer traffic (network, peer certificates); \
                     forcing a new cluster beside them splits it once they reconnect",
                    q.reachable_voters, q.voters
                )
            } else {
                format!("{} of {} voters reachable, {} needed", q.reachable_voters, q.voters, q.needed)
            },
        );
        // A member that follows a leader is proof of a working majority, however few answer here
        // (a firewall on the client port, members too slow for --dial-timeout).
        plan.check(
            "no member follows a leader",
            st.leader.is_empty() || args.force,
            match st.leader.is_empty() {
                true => "no member that answers knows a leader".to_string(),
                false => format!(
                    "a member that answers follows leader {}: a majority works; forcing a new cluster beside it \
                     splits it",
                    st.leader
                ),
            },
        );
        // A learner's leader may be gone (it keeps naming its last one) or alive beyond what answers
        // here (this node cut off from a working majority): only the operator can tell.
        let gone = |l: &str| args.leader_gone.iter().any(|g| common::report::same_id(g, l));
        // One naming a voter that answers here without a leader (this member among them) is stale
        // for sure: that voter leads no one.
        let stale = |l: &str| common::report::same_id(l, &before.member_id) || survey.answers_without_a_leader(l);
        let learners: Vec<(String, String)> =
            survey.learners_naming_a_leader().into_iter().filter(|(_, l)| !gone(l) && !stale(l)).collect();
        if st.leader.is_empty() && !learners.is_empty() {
            let named: Vec<String> = learners.iter().map(|(url, l)| format!("learner at {url} follows {l}")).collect();
            plan.check(
                "no learner follows a leader",
                args.force,
                format!(
                    "{}: a learner keeps naming its last leader, gone or not; if that member's node is down, \
                     --leader-gone {} (else a majority works beyond this node's reach, and forcing splits the \
                     cluster)",
                    named.join(", "),
                    learners[0].1
                ),
            );
        }
        // A member our certificates cannot talk to may be part of a live majority.
        let tls = survey.tls_failures();
        plan.check(
            "no member hidden by a TLS failure",
            tls.is_empty() || args.force,
            if tls.is_empty() {
                "every unreachable member failed to connect or timed out".to_string()
            } else {
                format!("TLS failed with {}: they may be alive; check --cacert/--cert/--key", tls.join("; "))
            },
        );
        if !args.via_restore {
            plan.check(
                "WAL intact",
                before.wal_crc_ok || args.force,
                if before.wal_crc_ok {
                    "CRC chain holds".to_string()
                } else {
                    "CRC mismatch: etcd will not start from this WAL; use --via-restore (restores the db)".to_string()
                },
            );
        }
        if !args.via_restore {
            let behind = crate::pick::wal_behind_db(&before);
            plan.check(
                "the WAL holds what the db applied",
                behind.is_none() || args.force,
                behind.unwrap_or_else(|| format!("applied {}, WAL up to {}", before.applied_index, before.last_index)),
            );
            if let Some(w) = removals_skipped(&before, manifest.image()) {
                common::say!("etcd-quorum: warning: {w}");
            }
        }
        plan.check(
            "data dir readable",
            before.problems.is_empty(),
            format!("{}: member {}, revision {}", dir.display(), before.member_id, before.revision),
        );
        if !args.via_restore {
            // A forced learner stays a learner alone: raft never elects it (a restore makes a voter).
            let learner = crate::pick::is_learner(&before);
            plan.check(
                "a voter",
                !learner,
                if learner { "this member is a learner: use --via-restore" } else { "not a learner" },
            );
        }
        if !args.no_backup {
            let root = backup::backup_root(&shared, args.backup_dir.as_deref());
            backup::writable_check(&mut plan, &root);
            let (ok, detail) = backup::room(&root, backup::tree_size(&dir));
            plan.check("disk room for the copy", ok, detail);
            plan.step(
                "copy data dir",
                format!(
                    "{} -> {}/<timestamp>/",
                    dir.display(),
                    backup::backup_root(&shared, args.backup_dir.as_deref()).display()
                ),
                false,
            );
        }
        plan.step("add --force-new-cluster", manifest.path.display().to_string(), true);
        plan.step("wait", "etcd restarted as a one-member cluster", false);
    }
    if args.via_restore && !interrupted {
        // The checks above still guard (a dry run that fails them shows this plan); the rest is
        // etcd-restore's swap and its plan.
        if let Some(code) = cli::plan_gate(&plan, shared.output, args.dry_run && !plan.failed().is_empty())? {
            return Ok(code);
        }
        return via_restore(&args, &shared, &dir, &before, others, &mut lock);
    }
    plan.step("remove --force-new-cluster", manifest.path.display().to_string(), true);
    plan.step("wait and verify", format!("{url} healthy, one voter, revision >= {}", before.revision), false);
    if let Some(code) = cli::plan_gate(&plan, shared.output, args.dry_run)? {
        return Ok(code);
    }
    cli::confirm(args.yes, &format!("force {} into a new one-member cluster", before.member_id))?;
    lock.begin();

    let mut backup_path = None;
    if !interrupted {
        if !args.no_backup {
            let b = backup::new_backup_dir(&backup::backup_root(&shared, args.backup_dir.as_deref()))?;
            let to = b.join(dir.file_name().unwrap_or(std::ffi::OsStr::new("etcd")));
            if let Err(e) = copy_tree(&dir, &to) {
                // Nothing changed yet but this half copy: it goes, so that no backup looks whole.
                let _ = std::fs::remove_dir_all(&b);
                return Err(anyhow!("copy {} to {}: {e} (nothing changed)", dir.display(), to.display()));
            }
            steps.push(format!("data dir copied to {}", to.display()));
            backup_path = Some(to.display().to_string());
        }
        manifest.set_flag("force-new-cluster", "true")?;
        manifest.save()?;
        let written = written_at(&shared.manifest);
        steps.push("--force-new-cluster added to the manifest".into());
        common::failpoint::hit("recover-flag-in");
        let forced = wait_restart(&crictl, |c| c.created_at > written, &shared, &url, timeout).and_then(|_| {
            others_gone(&shared, &url, &before.member_id, timeout);
            remove_kept_learners(&shared, &url, &before.member_id, &mut steps)?;
            let seen = members_seen_by(&shared, &url)?;
            if seen.len() != 1 {
                return Err(anyhow!(
                    "after the forced start {url} still lists {} members: {}",
                    seen.len(),
                    seen.join(", ")
                ));
            }
            Ok(())
        });
        if let Err(e) = forced {
            return Err(flag_out_after(e, &mut manifest, &crictl, written, &url, &dir, backup_path.as_deref()));
        }
        steps.push(format!("{url} restarted as a one-member cluster"));
    } else if members_seen_by(&shared, &url).map_or(true, |m| m.len() != 1) {
        // Interrupted before the forced start was seen: the kubelet may not have applied the flag
        // yet (it polls), and taking it out now would leave the old manifest and nothing forced.
        // Wait for a container started after the manifest was written.
        // One that never comes up (it crash-loops): the flag goes out as in the first run, else it
        // would stay for good, and force at whatever later start.
        let written = written_at(&shared.manifest);
        if let Err(e) = wait_restart(&crictl, |c| c.created_at > written, &shared, &url, timeout) {
            return Err(flag_out_after(e, &mut manifest, &crictl, written, &url, &dir, None));
        }
        steps.push(format!("{url} restarted as a one-member cluster (the interrupted run's flag)"));
    }
    manifest.remove_flag("force-new-cluster").and_then(|_| manifest.save()).map_err(|e| {
        exit::with_state(
            e,
            format!(
                "--force-new-cluster could NOT be taken out: remove it from {} by hand before etcd restarts again",
                manifest.path.display()
            ),
        )
    })?;
    steps.push("--force-new-cluster removed from the manifest".into());
    common::failpoint::hit("recover-flag-out");
    // The forced start is done and the flag is out: whatever fails now, the operator must know
    // that, and where the copy of the data dir is.
    let copy = backup_path.as_deref().map(|b| format!("; the data dir as it was is copied in {b}")).unwrap_or_default();
    let state = format!("the forced start is done and --force-new-cluster is out of {}{copy}", manifest.path.display());
    let written = written_at(&shared.manifest);
    let revision = wait_restart(&crictl, |c| c.created_at > written, &shared, &url, timeout)
        .map_err(|e| exit::with_state(e, state.clone()))?;
    // A rerun that resumed a forced start finishes it too.
    remove_kept_learners(&shared, &url, &before.member_id, &mut steps)
        .map_err(|e| exit::with_state(e, state.clone()))?;
    let seen = members_seen_by(&shared, &url).map_err(|e| exit::with_state(e, state.clone()))?;
    if seen.len() != 1 || revision < before.revision {
        let e = anyhow!(
            "after the recovery {url} lists {} members at revision {revision} (data had {})",
            seen.len(),
            before.revision
        );
        return Err(exit::with_state(e, state));
    }
    steps.push(format!("{url} healthy, one voter, revision {revision}"));
    // What etcd before 3.5.22 may leave behind (see removals_skipped): said, with the way out.
    let stale = listed_in_db(&dir, &before.member_id);
    if !stale.is_empty() {
        let w = format!(
            "warning: the db still lists {} though the cluster has one member (etcd PR 20055): etcd before 3.6 \
             reads its membership elsewhere, 3.6 from the db, where they would count as voters; run etcd 3.5.26 or \
             later once before any upgrade to 3.6 (it drops them from the db, etcd PR 20995)",
            stale.join(", ")
        );
        common::say!("etcd-quorum: {w}");
        steps.push(w);
    }
    let doc = QuorumRecovery {
        kind: "QuorumRecovery".into(),
        survivor: label(&before),
        steps,
        members_to_rejoin: others,
        manifest_restored: !Manifest::load(&shared.manifest)?.force_new_cluster(),
        backup: backup_path,
    };
    cli::emit(&doc, shared.output, render);
    Ok(exit::OK)
}

/// A forced start that failed: the flag goes out (the next restart would force again), and the
/// error says so, and whether a container started with it (then it may have forced the new
/// cluster: the WAL says, not us).
fn flag_out_after(
    e: anyhow::Error,
    manifest: &mut Manifest,
    crictl: &Crictl,
    written: u128,
    url: &str,
    dir: &Path,
    copy: Option<&str>,
) -> anyhow::Error {
    let started = crictl.etcd_containers().ok().and_then(|l| l.into_iter().find(|c| c.created_at > written));
    let undo = manifest.remove_flag("force-new-cluster").and_then(|_| manifest.save());
    let state = match undo {
        Ok(()) => "the flag is out of the manifest again".to_string(),
        Err(u) => format!(
            "the flag could NOT be taken out ({u:#}): remove --force-new-cluster from {} by hand",
            manifest.path.display()
        ),
    };
    let maybe_forced = match started {
        Some(c) => format!(
            "; etcd did start with the flag (container {}), so it may have forced the new cluster: run \
             etcd-status before any other member starts, and recover again (nothing to do if {url} leads alone)",
            c.short_id()
        ),
        None => String::new(),
    };
    let copy = copy.map(|b| format!("(copy in {b})")).unwrap_or_default();
    exit::with_state(e, format!("{state}; data dir {} {copy}{maybe_forced}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy follows a symlinked dir (a WAL on another disk) and refuses what it cannot copy.
    #[test]
    fn the_backup_copy_follows_links_and_leaves_no_gap() {
        let base = std::env::temp_dir().join(format!("recover-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (data, wal) = (base.join("etcd"), base.join("other-disk/wal"));
        std::fs::create_dir_all(data.join("member/snap")).unwrap();
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(data.join("member/snap/db"), b"db").unwrap();
        std::fs::write(wal.join("0.wal"), b"wal").unwrap();
        std::os::unix::fs::symlink(&wal, data.join("member/wal")).unwrap();
        copy_tree(&data, &base.join("copy")).unwrap();
        assert_eq!(std::fs::read(base.join("copy/member/wal/0.wal")).unwrap(), b"wal");
        assert!(!std::fs::symlink_metadata(base.join("copy/member/wal")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(base.join("copy/member/snap/db")).unwrap(), b"db");
        std::os::unix::fs::symlink(base.join("gone"), data.join("member/dangling")).unwrap();
        let err = copy_tree(&data, &base.join("copy2")).unwrap_err().to_string();
        assert!(err.contains("member/dangling"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A db ahead of the WAL's end is refused on any etcd; a db ahead of the WAL's commit index is
    /// said on etcd without the fix of PR 20055.
    #[test]
    fn a_forced_start_that_etcd_gets_wrong_is_said() {
        let doc = |commit, applied, last| common::report::DataDirInspection {
            commit_index: commit,
            applied_index: applied,
            last_index: last,
            ..Default::default()
        };
        let (synced, unsynced, wal_cut) = (doc(40, 40, 42), doc(38, 40, 42), doc(38, 40, 39));
        assert_eq!(crate::pick::wal_behind_db(&synced), None);
        assert_eq!(crate::pick::wal_behind_db(&unsynced), None);
        let cut = crate::pick::wal_behind_db(&wal_cut).unwrap_or_default();
        assert!(cut.contains("applied entry 40 but the WAL ends at 39") && cut.contains("--via-restore"), "{cut}");
        for image in ["etcd:3.5.0-0", "etcd:3.5.16-0", "etcd:3.5.21-0", "etcd:3.6.0-0", "etcd:3.5.16-0@sha256:0123"] {
            assert_eq!(removals_skipped(&synced, image), None, "{image}");
            let why = removals_skipped(&unsynced, image).unwrap_or_default();
            assert!(why.contains("applied entry 40 past the WAL's commit index 38"), "{image}: {why}");
            assert!(why.contains(&format!("(image {image})")) && why.contains("--via-restore"), "{why}");
        }
        let unknown = removals_skipped(&unsynced, "my-etcd:latest").unwrap_or_default();
        assert!(unknown.contains("etcd of an unknown version"), "{unknown}");
        for image in ["etcd:3.4.23-0", "etcd:3.5.22-0", "etcd:3.5.30-0", "etcd:3.6.1-0", "etcd:v3.6.5"] {
            assert_eq!(removals_skipped(&unsynced, image), None, "{image}");
        }
    }
}
