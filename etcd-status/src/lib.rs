//! etcd-status: the member list and the status of every member in one call, quorum math, alarms,
//! and the local node's view (container, manifest flags, certificate expiry).

use anyhow::Result;
use common::cli::{Output, Shared};
use common::client::{Dialer, EndpointError, FailKind};
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::report::{
    self, AlarmStatus, CertificateView, ClusterStatus, ContainerView, EndpointStatus, LocalView, MemberStatus, Quorum,
    hex_id,
};
use common::runtime::Crictl;
use etcd_client::{AlarmAction, AlarmType};
use std::collections::BTreeSet;
use std::path::Path;
use tokio::task::JoinSet;

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

struct StatusInfo {
    member_id: u64,
    cluster_id: u64,
    leader: u64,
    endpoint: EndpointStatus,
}

struct MemberInfo {
    id: u64,
    name: String,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
    is_learner: bool,
}

/// What one endpoint answered. `members`/`alarms` are asked of the seed endpoints only.
struct Probe {
    url: String,
    status: Result<StatusInfo, EndpointError>,
    members: Option<Result<(u64, Vec<MemberInfo>), EndpointError>>,
    alarms: Option<Result<Vec<AlarmStatus>, EndpointError>>,
}

async fn probe(dialer: Dialer, url: String, ask_cluster: bool) -> Probe {
    let client = match dialer.connect(&url).await {
        Ok(c) => c,
        Err(e) => return Probe { url, status: Err(e), members: None, alarms: None },
    };
    let (mut c1, mut c2, mut c3) = (client.clone(), client.clone(), client);
    let status = async {
        let s = dialer.call(c1.status()).await?;
        let member_id = s.header().map_or(0, |h| h.member_id());
        Ok(StatusInfo {
            member_id,
            cluster_id: s.header().map_or(0, |h| h.cluster_id()),
            leader: s.leader(),
            endpoint: EndpointStatus {
                url: url.clone(),
                reachable: true,
                error: None,
                version: s.version().to_string(),
                db_size: s.db_size(),
                db_size_in_use: s.raft_used_db_size(),
                is_leader: s.leader() != 0 && s.leader() == member_id,
                raft_term: s.raft_term(),
                raft_index: s.raft_index(),
                raft_applied_index: s.raft_applied_index(),
                errors: s.errors().to_vec(),
            },
        })
    };
    let members = async {
        if !ask_cluster {
            return None;
        }
        // etcd-client asks for a serializable list, which a member answers without quorum.
        Some(dialer.call(c2.member_list()).await.map(|r| {
            let list = r
                .members()
                .iter()
                .map(|m| MemberInfo {
                    id: m.id(),
                    name: m.name().to_string(),
                    peer_urls: m.peer_urls().to_vec(),
                    client_urls: m.client_urls().to_vec(),
                    is_learner: m.is_learner(),
                })
                .collect();
            (r.header().map_or(0, |h| h.cluster_id()), list)
        }))
    };
    let alarms = async {
        if !ask_cluster {
            return None;
        }
        Some(dialer.call(c3.alarm(AlarmAction::Get, AlarmType::None, None)).await.map(|r| {
            r.alarms()
                .iter()
                .filter(|a| a.alarm() != AlarmType::None)
                .map(|a| AlarmStatus { member_id: hex_id(a.member_id()), alarm: a.alarm().as_str_name().to_string() })
                .collect()
        }))
    };
    let (status, members, alarms) = tokio::join!(status, members, alarms);
    Probe { url, status, members, alarms }
}

/// Where to start: the given endpoints, else the manifest's client URLs plus a guess at the other
/// members' client URLs from `--initial-cluster` (same host, client port), so that a node whose own
/// etcd is down still finds the survivors; else the kubeadm default.
fn seed_endpoints(shared: &Shared, manifest: Option<&Manifest>) -> (Vec<String>, bool) {
    if let Some(list) = &shared.endpoints {
        return (list.clone(), true);
    }
    let mut seeds: Vec<String> = Vec::new();
    if let Some(m) = manifest {
        seeds.extend(m.client_urls());
        let client_port = seeds.first().and_then(|u| u.rsplit_once(':')).map_or("2379".to_string(), |(_, p)| {
            p.trim_end_matches('/').to_string()
        });
        for (_, peer) in m.initial_cluster() {
            if let Some((base, _)) = peer.trim_end_matches('/').rsplit_once(':') {
                seeds.push(format!("{base}:{client_port}"));
            }
        }
    }
    if seeds.is_empty() {
        seeds.push(common::cli::DEFAULT_ENDPOINT.to_string());
    }
    let mut seen = BTreeSet::new();
    seeds.retain(|s| seen.insert(s.clone()));
    (seeds, false)
}

/// Asks every seed in parallel; as soon as one returns the member list, asks the members not
/// among the seeds too, without waiting for slow seeds. Every request is bounded.
async fn gather(dialer: &Dialer, seeds: &[String]) -> (Vec<Probe>, Option<(u64, Vec<MemberInfo>)>) {
    let mut tasks = JoinSet::new();
    for url in seeds {
        tasks.spawn(probe(dialer.clone(), url.clone(), true));
    }
    let mut asked: BTreeSet<String> = seeds.iter().cloned().collect();
    let mut probes = Vec::new();
    let mut list: Option<(u64, Vec<MemberInfo>)> = None;
    while let Some(done) = tasks.join_next().await {
        let Ok(mut p) = done else { continue };
        if list.is_none()
            && let Some(Ok(l)) = p.members.take()
        {
            for m in &l.1 {
                let known = m.client_urls.iter().any(|u| asked.contains(u));
                if let (false, Some(url)) = (known, m.client_urls.first()) {
                    asked.insert(url.clone());
                    tasks.spawn(probe(dialer.clone(), url.clone(), false));
                }
            }
            list = Some(l);
        }
        probes.push(p);
    }
    (probes, list)
}

fn unreachable(url: &str, error: String) -> EndpointStatus {
    EndpointStatus { url: url.to_string(), reachable: false, error: Some(error), ..Default::default() }
}

/// Builds the cluster picture from the probes.
fn assemble(probes: &[Probe], list: Option<(u64, Vec<MemberInfo>)>, manifest: Option<&Manifest>) -> ClusterStatus {
    let answered: Vec<&StatusInfo> = probes.iter().filter_map(|p| p.status.as_ref().ok()).collect();
    let mut warnings = Vec::new();
    let (cluster_id, members) = match list {
        Some((cid, list)) => {
            let members: Vec<MemberStatus> = list
                .into_iter()
                .map(|m| {
                    let by_id = answered.iter().find(|s| s.member_id == m.id);
                    let endpoint = match by_id {
                        Some(s) => s.endpoint.clone(),
                        None => match probes.iter().find(|p| m.client_urls.contains(&p.url)) {
                            Some(Probe { url, status: Err(e), .. }) => unreachable(url, e.message.clone()),
                            Some(Probe { url, .. }) => unreachable(url, "answered as another member".into()),
                            None if m.client_urls.is_empty() => unreachable("", "not started".into()),
                            None => unreachable(&m.client_urls[0], "not asked".into()),
                        },
                    };
                    MemberStatus {
                        id: hex_id(m.id),
                        started: !m.name.is_empty() || !m.client_urls.is_empty(),
                        name: m.name,
                        peer_urls: m.peer_urls,
                        client_urls: m.client_urls,
                        is_learner: m.is_learner,
                        endpoint,
                    }
                })
                .collect();
            (cid, members)
        }
        None => {
            // No member answered: list what we tried, named after --initial-cluster where the host matches.
            warnings.push("no member list: no endpoint answered".to_string());
            let names = manifest.map(Manifest::initial_cluster).unwrap_or_default();
            let members = probes
                .iter()
                .map(|p| {
                    let host = host_of(&p.url);
                    let named = names.iter().find(|(_, peer)| host_of(peer) == host);
                    MemberStatus {
                        id: String::new(),
                        name: named.map(|(n, _)| n.clone()).unwrap_or_default(),
                        peer_urls: named.map(|(_, u)| vec![u.clone()]).unwrap_or_default(),
                        client_urls: vec![p.url.clone()],
                        is_learner: false,
                        started: true,
                        endpoint: match &p.status {
                            Ok(s) => s.endpoint.clone(),
                            Err(e) => unreachable(&p.url, e.message.clone()),
                        },
                    }
                })
                .collect();
            (0, members)
        }
    };
    let voters: Vec<&MemberStatus> = members.iter().filter(|m| !m.is_learner).collect();
    let quorum = Quorum::compute(voters.len(), voters.iter().filter(|m| m.endpoint.reachable).count());
    let leader = answered.iter().map(|s| s.leader).find(|&l| l != 0).map(hex_id).unwrap_or_default();
    let cluster_id = if cluster_id != 0 { cluster_id } else { answered.first().map_or(0, |s| s.cluster_id) };

    let mut alarms: Vec<AlarmStatus> = Vec::new();
    let mut alarm_errors = Vec::new();
    for p in probes {
        match &p.alarms {
            Some(Ok(list)) => {
                alarms = list.clone();
                alarm_errors.clear();
                break;
            }
            Some(Err(e)) => alarm_errors.push(format!("{}: {e}", p.url)),
            None => {}
        }
    }
    if !alarm_errors.is_empty() && !answered.is_empty() {
        warnings.push(format!("alarm list unavailable: {}", alarm_errors.join("; ")));
    }

    for m in &members {
        let who = if m.name.is_empty() { m.id.clone() } else { format!("{} ({})", m.name, m.id) };
        if !m.started {
            warnings.push(format!("member {who} was added but never started"));
        } else if let Some(err) = &m.endpoint.error {
            warnings.push(format!("member {who} unreachable at {}: {err}", m.endpoint.url));
        }
        if m.is_learner {
            warnings.push(format!("member {who} is a learner (not promoted)"));
        }
        for e in &m.endpoint.errors {
            warnings.push(format!("member {who} reports: {e}"));
        }
    }
    for a in &alarms {
        warnings.push(format!("alarm {} on member {}", a.alarm, a.member_id));
    }
    if !quorum.has_quorum {
        warnings.push(format!(
            "quorum lost: {} of {} voters reachable, {} needed",
            quorum.reachable_voters, quorum.voters, quorum.needed
        ));
    }
    ClusterStatus {
        kind: "ClusterStatus".into(),
        taken_at: common::time::rfc3339_secs(common::time::now_secs()),
        cluster_id: if cluster_id == 0 { String::new() } else { hex_id(cluster_id) },
        leader,
        members,
        alarms,
        quorum,
        local: None,
        warnings,
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.rsplit_once(':').map_or(rest, |(h, _)| h)
}

fn certificate(path: &Path, used_as: String, now: i64) -> CertificateView {
    let mut view = CertificateView { path: path.display().to_string(), used_as, ..Default::default() };
    match common::pki::validity(path) {
        Ok((_, not_after)) => {
            view.not_after = Some(common::time::rfc3339_secs(not_after));
            view.days_left = Some(common::pki::days_left(not_after, now));
        }
        Err(e) => view.error = Some(format!("{e:#}")),
    }
    view
}

/// This node: the etcd container (a missing or failing crictl only degrades this view), the log
/// tail when etcd is not running, the manifest's flags, certificate expiry.
fn local_view(shared: &Shared, manifest: &Manifest, log_lines: usize) -> LocalView {
    let mut view = LocalView {
        manifest: manifest.path.display().to_string(),
        manifest_flags: manifest.flags(),
        force_new_cluster: manifest.force_new_cluster(),
        ..Default::default()
    };
    let crictl = Crictl::new(&shared.crictl);
    match crictl.find_etcd() {
        Ok(Some(c)) => {
            if !c.running() && log_lines > 0 {
                match crictl.logs_tail(&c.id, log_lines) {
                    Ok(lines) => view.logs = lines,
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
fn local_warnings(local: &LocalView) -> Vec<String> {
    let mut out = Vec::new();
    if local.force_new_cluster {
        out.push(format!(
            "--force-new-cluster is still in {}: remove it now, the next etcd restart would drop every member added since",
            local.manifest
        ));
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
    // The manifest is optional unless named: etcd-status also runs from a workstation.
    let manifest = if args.manifest.is_some() || shared.manifest.exists() {
        Some(Manifest::load(&shared.manifest)?)
    } else {
        None
    };
    let (seeds, explicit) = seed_endpoints(&shared, manifest.as_ref());
    log::info!("endpoints {seeds:?} ({})", if explicit { "given" } else { "found" });
    let dialer = Dialer::new(&shared, seeds.iter().any(|s| s.starts_with("https://")))?;
    let rt = common::client::runtime()?;
    let (probes, list) = rt.block_on(gather(&dialer, &seeds));
    drop(rt);

    let mut status = assemble(&probes, list, manifest.as_ref());
    let mut degraded = status.warnings.iter().any(|w| !w.starts_with("no member list"));
    if let Some(m) = &manifest {
        let local = local_view(&shared, m, args.logs);
        let more = local_warnings(&local);
        degraded |= !more.is_empty();
        status.warnings.extend(more);
        status.local = Some(local);
    }

    let failures: Vec<&EndpointError> = probes.iter().filter_map(|p| p.status.as_ref().err()).collect();
    let nobody = failures.len() == probes.len();
    if nobody && failures.iter().all(|e| e.kind == FailKind::Tls) {
        // Our TLS setup is wrong, not the cluster: say so instead of printing a dead cluster.
        let all: Vec<String> = probes.iter().map(|p| format!("{}: {}", p.url, describe(p))).collect();
        return Err(coded(exit::ERROR, format!("TLS failed with every endpoint ({}); check --cacert/--cert/--key", all.join("; "))));
    }
    print(&status, shared.output);
    let code = if nobody {
        let all: Vec<String> = probes.iter().map(|p| format!("{}: {}", p.url, describe(p))).collect();
        eprintln!("etcd-status: no endpoint reachable: {}", all.join("; "));
        if failures.iter().all(|e| e.kind == FailKind::Timeout) { exit::TIMEOUT } else { exit::QUORUM_LOST }
    } else if !status.quorum.has_quorum {
        exit::QUORUM_LOST
    } else if degraded {
        exit::DEGRADED
    } else {
        exit::OK
    };
    Ok(code)
}

fn describe(p: &Probe) -> String {
    p.status.as_ref().err().map_or("ok".into(), |e| e.message.clone())
}

fn print(s: &ClusterStatus, output: Output) {
    match output {
        Output::Json => report::print_json(s),
        Output::Table => print!("{}", render_table(s)),
    }
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
            let num = |v: u64| if e.reachable { v.to_string() } else { String::new() };
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
            "ID", "NAME", "STATUS", "ENDPOINT", "PEER ADDRS", "VERSION", "DB SIZE", "IN USE", "IS LEADER", "IS LEARNER",
            "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS",
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
                (Some(na), Some(d), _) => out += &format!("  cert {} ({}): until {na}, {d} days left\n", c.path, c.used_as),
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
