//! etcd-status: the member list and the status of every member in one call, quorum math, alarms,
//! and the local node's view (container, manifest flags, certificate expiry).

use anyhow::Result;
use common::cli::{Output, Shared};
use common::client::FailKind;
use common::cluster;
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::report::{self, CertificateView, ClusterStatus, ContainerView, LocalView};
use common::runtime::Crictl;
use std::path::Path;

common::with_shared_flags! {
    /// Show the whole etcd cluster in one call: member list and endpoint status of every member
    /// (unreachable ones with their error), alarms, quorum math, and this node's view: the etcd
    /// container, the manifest's flags and the certificates' expiry.
    #[argh(
        example = "On a control-plane node (endpoints and certificates from the kubeadm layout):\n  $ etcd-status",
        example = "Against given members, as JSON for other tools:\n  $ etcd-status --endpoints https://10.0.0.11:2379 -w json | etcd-member remove --unreachable --status - --yes",
        note = "Exit codes: 0 healthy, 1 error, 2 usage, 3 degraded (a member unreachable or not started, a learner, an \
alarm, --force-new-cluster left in the manifest, a certificate expiring within 30 days), 4 quorum lost, 7 no endpoint \
answered in time."
    )]
    pub struct Args {
        /// log lines of the local etcd container to show when it is not running (default 20)
        #[argh(option, default = "20")]
        pub logs: usize,
    }
}

/// Certificates expiring sooner than this make the cluster "degraded".
const CERT_WARN_DAYS: i64 = 30;

fn certificate(path: &Path, used_as: String, now: i64) -> CertificateView {
    // A trust bundle holds old and new CAs during a rotation; a certificate file, a leaf and its chain.
    let bundle = used_as.contains("trusted-ca-file");
    let mut view = CertificateView { path: path.display().to_string(), used_as, ..Default::default() };
    let validity = match bundle {
        true => common::pki::bundle_validity(path, now),
        false => common::pki::validity(path),
    };
    match validity {
        Ok((_, not_after)) => {
            view.not_after = Some(common::time::rfc3339_secs(not_after));
            view.days_left = Some(common::pki::days_left(not_after, now));
        }
        Err(e) => view.error = Some(format!("{e:#}")),
    }
    view
}

/// How far back the log is searched for the line that says why etcd stopped.
const CAUSE_SEARCH_LINES: usize = 300;

/// The last `n` lines, with the line that says why etcd stopped first when it is further back: a
/// Go panic's stack (dozens of lines) pushes its message out of a short tail.
fn tail_with_cause(lines: Vec<String>, n: usize) -> Vec<String> {
    let start = lines.len().saturating_sub(n);
    let is_cause = |l: &String| {
        l.contains("panic: ")
            || l.contains("\"level\":\"fatal\"")
            || l.contains("\"level\":\"panic\"")
            || l.starts_with("fatal error:")
    };
    let cause = lines[..start].iter().rposition(is_cause).filter(|_| !lines[start..].iter().any(is_cause));
    cause.map(|i| lines[i].clone()).into_iter().chain(lines[start..].iter().cloned()).collect()
}

/// This node: the etcd container (a missing or failing crictl only degrades this view), the log
/// tail when etcd is not running, the manifest's flags, certificate expiry.
fn local_view(shared: &Shared, manifest: &Manifest, log_lines: usize) -> LocalView {
    let mut view = LocalView {
        manifest: manifest.path.display().to_string(),
        manifest_flags: manifest.flags(),
        force_new_cluster: manifest.force_new_cluster() || manifest.force_new_cluster_env(),
        ..Default::default()
    };
    let crictl = Crictl::new(&shared.crictl);
    match crictl.find_etcd() {
        Ok(Some(c)) => {
            if !c.running() && log_lines > 0 {
                match crictl.logs_tail(&c.id, log_lines.max(CAUSE_SEARCH_LINES)) {
                    Ok(lines) => view.logs = tail_with_cause(lines, log_lines),
                    Err(e) => view.warnings.push(format!("logs of {}: {e:#}", c.id)),
                }
            }
            view.container = Some(ContainerView { id: c.id, state: c.state, attempt: c.attempt });
        }
        Ok(None) => view.warnings.push("crictl lists no etcd container".into()),
        Err(e) => view.warnings.push(format!("container state unknown: {e:#}")),
    }
    let now = common::time::now_secs();
    for (path, flags) in manifest.certificate_files(&shared.rootfs) {
        view.certificates.push(certificate(&path, flags.join(" "), now));
    }
    view.certificates.push(certificate(&shared.tls.cert, "client (--cert)".into(), now));
    view
}

/// Degraded-state reasons that come from the local view.
fn local_warnings(
    local: &LocalView,
    manifest: &Manifest,
    rootfs: &Path,
    cluster: Option<&ClusterStatus>,
) -> Vec<String> {
    let mut out = Vec::new();
    // The cluster may be fine while this node's own etcd is not: that is this node's finding.
    if let Some(c) = local.container.as_ref().filter(|c| c.state != "CONTAINER_RUNNING") {
        out.push(format!(
            "this node's etcd is not running (container {} {}, attempt {}): its log tail says why",
            c.id, c.state, c.attempt
        ));
    }
    if let Ok(dir) = manifest.data_dir(rootfs)
        && !dir.join("member").is_dir()
    {
        out.push(format!("{}, the manifest's --data-dir, holds no member data", dir.display()));
    }
    // Listed by the cluster (not as this node's own data recorded it): a member removed since
    // cannot come back by restarting; its etcd exits at each start.
    if let Some(s) = cluster
        .filter(|s| !s.cluster_id.is_empty() && !s.warnings.iter().any(|w| w.starts_with(cluster::NO_LIST_WARNING)))
    {
        let name = manifest.flag("name").unwrap_or_default();
        let peers = manifest.flag("initial-advertise-peer-urls").unwrap_or_default();
        if cluster::own_member(&s.members, &name, &peers).is_none() {
            out.push(format!(
                "this node's member ({name}, {peers}) is not in the cluster's member list: it was removed, and its \
                 etcd cannot rejoin as it is (etcd-member clean, then etcd-member join)"
            ));
        }
    }
    if local.force_new_cluster {
        let what = match manifest.force_new_cluster() {
            true => "--force-new-cluster is still in",
            false => "ETCD_FORCE_NEW_CLUSTER is set in the env of",
        };
        out.push(format!(
            "{what} {}: remove it now, the next etcd restart would drop every member added since",
            local.manifest
        ));
    }
    if let Some(p) = common::manifest::rivals_problem(&manifest.path) {
        out.push(p);
    }
    // ETCD_FORCE_NEW_CLUSTER in the env forces at every restart, unseen by the check above.
    if let Some(p) = manifest.hidden_problem() {
        out.push(p);
    }
    for c in &local.certificates {
        match (&c.error, c.days_left) {
            (Some(e), _) => out.push(format!("certificate {}: {e}", c.used_as)),
            (None, Some(d)) if d < 0 => out.push(format!("certificate {} ({}) has expired", c.path, c.used_as)),
            (None, Some(d)) if d < CERT_WARN_DAYS => {
                out.push(format!("certificate {} ({}) expires in {d} days", c.path, c.used_as))
            }
            _ => {}
        }
    }
    out
}

pub fn run(args: Args) -> Result<u8> {
    use common::cli::HasShared;
    let shared = args.shared_flags().resolve()?;
    // The manifest is optional unless named: etcd-status also runs from a workstation. A broken
    // one at the default path is a finding about this node, not a reason to hide the cluster.
    let mut broken = None;
    let manifest = if args.manifest.is_some() {
        Some(Manifest::load(&shared.manifest)?)
    } else if shared.manifest.exists() {
        Manifest::load(&shared.manifest).map_err(|e| broken = Some(format!("{e:#}; the local view is left out"))).ok()
    } else {
        None
    };
    // This node's certificate findings, for errors that end the run before the local view: the
    // client certificate refused before any dial (expired: kubeadm's all expire after a year),
    // or every endpoint failing TLS.
    let certs_here = || {
        let here: Vec<String> = manifest
            .as_ref()
            .map(|m| local_warnings(&local_view(&shared, m, 0), m, &shared.rootfs, None))
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w.starts_with("certificate "))
            .collect();
        match here.is_empty() {
            true => String::new(),
            false => format!("; on this node: {}", here.join("; ")),
        }
    };
    // kubeadm's first node names only itself in --initial-cluster: with its etcd down, the
    // members its data dir knew are asked too; on a cleaned node, where its moved-aside manifest
    // and data say. Endpoints given are asked alone: the picture asked for.
    let survey = cluster::survey_of_node(&shared, manifest.as_ref());
    // A client certificate out of its validity (kubeadm's expire together): this node's are named.
    let survey = survey.map_err(|e| match e.downcast_ref::<common::client::CertOutOfValidity>() {
        Some(_) => coded(exit::code_of(&e), format!("{e:#}{}", certs_here())),
        None => e,
    })?;
    if survey.all_failed_with(FailKind::Tls) {
        // Our TLS setup is wrong, not the cluster: say so instead of printing a dead cluster. Or
        // the servers' certificates are: this node's are named.
        return Err(coded(
            exit::ERROR,
            format!(
                "TLS failed with every endpoint ({}); check --cacert/--cert/--key{}",
                survey.describe_failures(),
                certs_here()
            ),
        ));
    }
    // Only the default asked and it did not answer: nothing is known of any cluster, so no picture
    // of one (it would be a made-up one-member cluster with its quorum lost).
    if survey.nobody_answered() && survey.only_the_default() && manifest.is_none() && broken.is_none() {
        return Err(survey.unreachable());
    }
    let mut status = survey.status.clone();
    let mut degraded = cluster::is_degraded(&status);
    if let Some(b) = broken {
        common::say!("etcd-status: {b}");
        status.warnings.push(b);
        degraded = true;
    }
    if let Some(m) = &manifest {
        let local = local_view(&shared, m, args.logs);
        let more = local_warnings(&local, m, &shared.rootfs, Some(&status));
        degraded |= !more.is_empty();
        status.warnings.extend(more);
        status.local = Some(local);
    }
    print(&status, shared.output);
    let code = if survey.nobody_answered() {
        common::say!("etcd-status: no endpoint reachable: {}", survey.describe_failures());
        if survey.all_failed_with(FailKind::Timeout) { exit::TIMEOUT } else { exit::QUORUM_LOST }
    } else if !status.quorum.has_quorum {
        exit::QUORUM_LOST
    } else if degraded {
        exit::DEGRADED
    } else {
        exit::OK
    };
    Ok(code)
}

fn print(s: &ClusterStatus, output: Output) {
    common::cli::emit(s, output, render_table);
}

/// etcdctl's `member list` and `endpoint status` tables merged, then quorum, alarms, local view.
pub fn render_table(s: &ClusterStatus) -> String {
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            let e = &m.endpoint;
            let state = if !m.started {
                "unstarted"
            } else if e.reachable {
                "ok"
            } else {
                "UNREACHABLE"
            };
            let num = |v: u64| {
                if e.reachable { v.to_string() } else { String::new() }
            };
            vec![
                m.id.clone(),
                m.name.clone(),
                state.to_string(),
                e.url.clone(),
                m.peer_urls.join(","),
                e.version.clone(),
                if e.reachable { report::human_bytes(e.db_size) } else { String::new() },
                if e.reachable { report::human_bytes(e.db_size_in_use) } else { String::new() },
                if e.is_leader { "true" } else { "false" }.into(),
                m.is_learner.to_string(),
                num(e.raft_term),
                num(e.raft_index),
                num(e.raft_applied_index),
                e.error.clone().unwrap_or_else(|| e.errors.join(", ")),
            ]
        })
        .collect();
    let mut out = format!(
        "cluster {}  leader {}\n",
        if s.cluster_id.is_empty() { "?" } else { &s.cluster_id },
        if s.leader.is_empty() { "none" } else { &s.leader }
    );
    out += &report::table(
        &[
            "ID",
            "NAME",
            "STATUS",
            "ENDPOINT",
            "PEER ADDRS",
            "VERSION",
            "DB SIZE",
            "IN USE",
            "IS LEADER",
            "IS LEARNER",
            "RAFT TERM",
            "RAFT INDEX",
            "RAFT APPLIED INDEX",
            "ERRORS",
        ],
        &rows,
    );
    let q = &s.quorum;
    out += &format!(
        "quorum: {} voters, {} reachable, {} needed: {} (fault tolerance {})\n",
        q.voters,
        q.reachable_voters,
        q.needed,
        if q.has_quorum { "ok" } else { "LOST" },
        q.fault_tolerance
    );
    let alarms: Vec<String> = s.alarms.iter().map(|a| format!("{} on {}", a.alarm, a.member_id)).collect();
    out += &format!("alarms: {}\n", if alarms.is_empty() { "none".into() } else { alarms.join(", ") });
    if let Some(l) = &s.local {
        out += &format!("local: manifest {}\n", l.manifest);
        match &l.container {
            Some(c) => out += &format!("  container {} {} attempt {}\n", c.id, c.state, c.attempt),
            None => out += "  container unknown\n",
        }
        if l.force_new_cluster {
            out += "  !!! --force-new-cluster is still in the manifest !!!\n";
        }
        for c in &l.certificates {
            match (&c.not_after, c.days_left, &c.error) {
                (Some(na), Some(d), _) => {
                    out += &format!("  cert {} ({}): until {na}, {d} days left\n", c.path, c.used_as)
                }
                (_, _, Some(e)) => out += &format!("  cert {}: {e}\n", c.used_as),
                _ => {}
            }
        }
        for w in &l.warnings {
            out += &format!("  warning: {w}\n");
        }
        if !l.logs.is_empty() {
            out += "  last log lines of the etcd container:\n";
            for line in &l.logs {
                out += &format!("    {line}\n");
            }
        }
    }
    for w in &s.warnings {
        out += &format!("WARNING: {w}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_of_a_crash_goes_first_when_the_tail_misses_it() {
        let mut lines: Vec<String> =
            vec!["started".into(), "panic: tocommit(33) is out of range [lastIndex(0)]".into()];
        lines.extend((0..40).map(|i| format!("\tgoroutine frame {i}")));
        let tail = tail_with_cause(lines.clone(), 20);
        assert_eq!(tail.len(), 21);
        assert_eq!(tail[0], lines[1]);
        assert_eq!(tail[1..], lines[22..]);
        // In the tail already: the tail as it is.
        assert_eq!(tail_with_cause(lines.clone(), 41), lines[1..].to_vec());
        // zap's JSON line of a fatal log counts too; none at all, the plain tail.
        let fatal = vec![r#"{"level":"fatal","msg":"x"}"#.to_string(), "a".into(), "b".into()];
        assert_eq!(tail_with_cause(fatal.clone(), 1), [fatal[0].clone(), "b".into()]);
        assert_eq!(tail_with_cause(vec!["a".into(), "b".into()], 1), ["b"]);
    }

    fn member(name: &str, peer: &str) -> report::MemberStatus {
        report::MemberStatus {
            member: report::MemberRef {
                id: "01".into(),
                name: name.into(),
                peer_urls: vec![peer.into()],
                ..Default::default()
            },
            started: true,
            endpoint: Default::default(),
        }
    }

    #[test]
    fn this_nodes_own_troubles_are_warned_of() {
        let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/testdata");
        let text = std::fs::read_to_string(testdata.join("etcd.yaml.kubeadm-1.31")).unwrap();
        let root = std::env::temp_dir().join(format!("status-local-{}", std::process::id()));
        let m = Manifest::parse(&root.join("etc/kubernetes/manifests/etcd.yaml"), &text).unwrap();
        std::fs::create_dir_all(root.join("var/lib/etcd/member")).unwrap();
        let running = LocalView {
            container: Some(ContainerView { id: "c1".into(), state: "CONTAINER_RUNNING".into(), attempt: 0 }),
            ..Default::default()
        };
        let status = |members| ClusterStatus {
            kind: "ClusterStatus".into(),
            taken_at: String::new(),
            cluster_id: "0a".into(),
            leader: String::new(),
            members,
            alarms: vec![],
            quorum: Default::default(),
            local: None,
            warnings: vec![],
        };
        let listed =
            status(vec![member("cp1", "https://192.168.0.150:2380"), member("cp2", "https://192.168.0.151:2380")]);
        assert_eq!(local_warnings(&running, &m, &root, Some(&listed)), Vec::<String>::new());
        // Removed from the cluster; not running; its data gone.
        let gone = status(vec![member("cp2", "https://192.168.0.151:2380")]);
        let w = local_warnings(&running, &m, &root, Some(&gone)).join("\n");
        assert!(
            w.contains("this node's member (cp1, https://192.168.0.150:2380) is not in the cluster's member list"),
            "{w}"
        );
        let exited = LocalView {
            container: Some(ContainerView { id: "c1".into(), state: "CONTAINER_EXITED".into(), attempt: 3 }),
            ..Default::default()
        };
        let w = local_warnings(&exited, &m, &root, Some(&listed)).join("\n");
        assert!(w.contains("this node's etcd is not running (container c1 CONTAINER_EXITED, attempt 3)"), "{w}");
        std::fs::remove_dir_all(root.join("var/lib/etcd/member")).unwrap();
        let w = local_warnings(&running, &m, &root, Some(&listed)).join("\n");
        assert!(w.contains("var/lib/etcd, the manifest's --data-dir, holds no member data"), "{w}");
        // A list this node's data recorded (nobody answered) is no finding about membership.
        let mut recorded = gone.clone();
        recorded.warnings.push(format!("{}: no endpoint answered", cluster::NO_LIST_WARNING));
        assert!(!local_warnings(&running, &m, &root, Some(&recorded)).join("\n").contains("not in the cluster's"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
