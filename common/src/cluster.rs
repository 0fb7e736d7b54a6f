//! The cluster as its members see it: every member asked in parallel (member list, status),
//! each request bounded, and the answers assembled into a `ClusterStatus`.
//!
//! Only requests a member answers on its own are made: the alarm list RPC goes through raft and
//! hangs while the leader is frozen, but every member's status carries the active alarms in its
//! `errors` (`memberID:<decimal> alarm:NOSPACE`), which is where they are read.

use crate::cli::Shared;
use crate::client::{Dialer, EndpointError, FailKind};
use crate::disk::inspect::DbState;
use crate::manifest::Manifest;
use crate::report::{AlarmStatus, ClusterStatus, EndpointStatus, MemberRef, MemberStatus, Quorum, hex_id};
use anyhow::Result;
use std::collections::BTreeSet;
use tokio::task::JoinSet;

pub struct StatusInfo {
    /// The alarms this member knows of (all members apply the same alarm list).
    pub alarms: Vec<AlarmStatus>,
    member_id: u64,
    cluster_id: u64,
    leader: u64,
    is_learner: bool,
    endpoint: EndpointStatus,
}

pub struct MemberInfo {
    id: u64,
    name: String,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
    is_learner: bool,
}

/// What one endpoint answered. `members` is asked of the seed endpoints only.
pub struct Probe {
    pub url: String,
    pub status: Result<StatusInfo, EndpointError>,
    members: Option<Result<(u64, Vec<MemberInfo>), EndpointError>>,
}

async fn probe(dialer: Dialer, url: String, ask_cluster: bool) -> Probe {
    let client = match dialer.connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            return Probe { url, status: Err(e), members: None };
        }
    };
    let (mut c1, mut c2) = (client.clone(), client);
    let status = async {
        let s = dialer.call(c1.status()).await.map_err(|e| closed_after_handshake(&url, e))?;
        let member_id = s.header().map_or(0, |h| h.member_id());
        Ok(StatusInfo {
            member_id,
            cluster_id: s.header().map_or(0, |h| h.cluster_id()),
            leader: s.leader(),
            is_learner: s.is_learner(),
            alarms: s.errors().iter().filter_map(|e| parse_alarm(e)).collect(),
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
                // Alarms are reported apart (`alarms`), not as this member's errors.
                errors: s.errors().iter().filter(|e| parse_alarm(e).is_none()).cloned().collect(),
            },
        })
    };
    let members = async {
        if !ask_cluster {
            return None;
        }
        // etcd-client asks for a serializable list, which a member answers without quorum.
        Some(dialer.call(c2.member_list()).await.map_err(|e| closed_after_handshake(&url, e)).map(|r| {
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
    let (status, members) = tokio::join!(status, members);
    Probe { url, status, members }
}

/// What a request sees of a connection the server hung up on after the handshake, as the race
/// between its write and the server's close goes (all seen against etcd 3.5).
const HUNG_UP: [&str; 4] = ["connection closed", "broken pipe", "connection was not ready", "connection reset"];

/// etcd drops the connection of a client certificate it does not accept (another CA, wrong
/// usage); over TLS 1.3 the client's handshake is already done then, and its first request only
/// sees the connection hung up. That is a TLS failure, not a dead member (a dead one refuses the
/// dial, a frozen one times out).
fn closed_after_handshake(url: &str, e: EndpointError) -> EndpointError {
    let l = e.message.to_lowercase();
    if url.starts_with("https://") && e.kind == FailKind::Other && HUNG_UP.iter().any(|h| l.contains(h)) {
        return EndpointError {
            kind: FailKind::Tls,
            message: format!(
                "the server closed the connection after the TLS handshake, as etcd does when it rejects the \
                 client certificate ({})",
                e.message
            ),
        };
    }
    e
}

/// Where to start: the given endpoints, else the manifest's client URLs plus a guess at the other
/// members' client URLs from `--initial-cluster` (same host, client port), so that a node whose own
/// etcd is down still finds the survivors; else the kubeadm default.
pub fn seed_endpoints(shared: &Shared, manifest: Option<&Manifest>) -> (Vec<String>, bool) {
    if let Some(list) = &shared.endpoints {
        return (list.clone(), true);
    }
    let mut seeds: Vec<String> = Vec::new();
    if let Some(m) = manifest {
        seeds.extend(m.client_urls());
        let port = client_port(m);
        seeds.extend(m.initial_cluster().iter().filter_map(|(_, peer)| on_port(peer, &port)));
    }
    if seeds.is_empty() {
        seeds.push(crate::cli::DEFAULT_ENDPOINT.to_string());
    }
    let mut seen = BTreeSet::new();
    seeds.retain(|s| seen.insert(s.clone()));
    (seeds, false)
}

/// The port of the manifest's first client URL (kubeadm's layout: every member uses the same).
pub fn client_port(m: &Manifest) -> String {
    m.client_urls()
        .first()
        .and_then(|u| u.trim_end_matches('/').rsplit_once(':').map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| "2379".into())
}

/// A member's peer URL moved to `port`: a guess at its client URL (same host, same scheme).
pub fn on_port(peer: &str, port: &str) -> Option<String> {
    let (base, _) = peer.trim_end_matches('/').rsplit_once(':')?;
    Some(format!("{base}:{port}"))
}

/// A member list as a seed gave it: the seed's place in the order, whether it follows a leader.
struct Listed {
    seed: usize,
    led: bool,
    list: (u64, Vec<MemberInfo>),
}

/// Which list describes the cluster: one of the cluster this node's own member answers for, when
/// it answers (beside a node restored alone, each side sees its own, whichever answers first and
/// whatever order `--endpoints` gives); then one from a member that follows a leader (a cut-off
/// one's may be stale); then the earliest seed's.
fn choose(lists: Vec<Listed>, own_cluster: Option<u64>) -> Option<(u64, Vec<MemberInfo>)> {
    let foreign = |l: &Listed| own_cluster.is_some_and(|c| c != l.list.0);
    lists.into_iter().min_by_key(|l| (foreign(l), !l.led, l.seed)).map(|l| l.list)
}

/// Asks every seed in parallel; as soon as one returns a member list, asks the members not among
/// the seeds too, at each of their client URLs, without waiting for slow seeds. Every request is
/// bounded. `own`: this node's own member's client URLs (its manifest's), if any.
pub async fn gather(dialer: &Dialer, seeds: &[String], own: &[String]) -> (Vec<Probe>, Option<(u64, Vec<MemberInfo>)>) {
    let mut tasks = JoinSet::new();
    for url in seeds {
        tasks.spawn(probe(dialer.clone(), url.clone(), true));
    }
    let mut asked: BTreeSet<String> = seeds.iter().cloned().collect();
    let mut probes = Vec::new();
    let mut lists = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let Ok(mut p) = done else { continue };
        if let Some(Ok(list)) = p.members.take() {
            // Every client URL of a member, not its first alone: etcd sorts them, and the first
            // may be one this host cannot reach (another network, a loopback shared by all).
            for url in list.1.iter().flat_map(|m| &m.client_urls) {
                if asked.insert(url.clone()) {
                    tasks.spawn(probe(dialer.clone(), url.clone(), false));
                }
            }
            let seed = seeds.iter().position(|s| *s == p.url).unwrap_or(usize::MAX);
            lists.push(Listed { seed, led: p.status.as_ref().is_ok_and(|s| s.leader != 0), list });
        }
        probes.push(p);
    }
    let own_cluster =
        probes.iter().filter(|p| own.contains(&p.url)).find_map(|p| p.status.as_ref().ok().map(|s| s.cluster_id));
    (probes, choose(lists, own_cluster))
}

fn unreachable(url: &str, error: String) -> EndpointStatus {
    EndpointStatus { url: url.to_string(), reachable: false, error: Some(error), ..Default::default() }
}

/// Builds the cluster picture from the probes.
/// An alarm as a member's status lists it: `memberID:10276657743932975437 alarm:NOSPACE `.
fn parse_alarm(e: &str) -> Option<AlarmStatus> {
    let rest = e.trim().strip_prefix("memberID:")?;
    let (id, alarm) = rest.split_once(' ')?;
    let alarm = alarm.trim().strip_prefix("alarm:")?;
    Some(AlarmStatus { member_id: hex_id(id.parse().ok()?), alarm: alarm.to_string() })
}

/// The start of the warnings that make a picture degraded though every listed member is well.
pub const FOREIGN_WARNING: &str = "answers for another cluster";
pub const NO_LIST_WARNING: &str = "no member list";

pub fn assemble(probes: &[Probe], list: Option<(u64, Vec<MemberInfo>)>, manifest: Option<&Manifest>) -> ClusterStatus {
    let mut warnings = Vec::new();
    // Members of another cluster (a node restored alone beside the old one, say) say nothing of
    // this one: not matched, not its leader, not its alarms; named.
    let list_cluster = list.as_ref().map_or(0, |l| l.0);
    let (answered, foreign): (Vec<&StatusInfo>, Vec<&StatusInfo>) = probes
        .iter()
        .filter_map(|p| p.status.as_ref().ok())
        .partition(|s| list_cluster == 0 || s.cluster_id == 0 || s.cluster_id == list_cluster);
    for s in &foreign {
        warnings.push(format!(
            "{} (member {}) {FOREIGN_WARNING} ({}, not {})",
            s.endpoint.url,
            hex_id(s.member_id),
            hex_id(s.cluster_id),
            hex_id(list_cluster)
        ));
    }
    let (cluster_id, members) = match list {
        Some((cid, list)) => {
            let members: Vec<MemberStatus> = list
                .into_iter()
                .map(|m| {
                    let by_id = answered.iter().find(|s| s.member_id == m.id);
                    let endpoint = match by_id {
                        Some(s) => s.endpoint.clone(),
                        // Of several URLs, the first one asked says why.
                        None => match m.client_urls.iter().find_map(|u| probes.iter().find(|p| &p.url == u)) {
                            Some(Probe { url, status: Err(e), .. }) => unreachable(url, e.message.clone()),
                            Some(Probe { url, status: Ok(s), .. })
                                if foreign.iter().any(|f| f.endpoint.url == s.endpoint.url) =>
                            {
                                unreachable(
                                    url,
                                    format!(
                                        "answered as member {} of another cluster {}",
                                        hex_id(s.member_id),
                                        hex_id(s.cluster_id)
                                    ),
                                )
                            }
                            Some(Probe { url, .. }) => unreachable(url, "answered as another member".into()),
                            None if m.client_urls.is_empty() => unreachable("", "not started".into()),
                            None => unreachable(&m.client_urls[0], "not asked".into()),
                        },
                    };
                    MemberStatus {
                        started: !m.name.is_empty() || !m.client_urls.is_empty(),
                        member: MemberRef {
                            id: hex_id(m.id),
                            name: m.name,
                            peer_urls: m.peer_urls,
                            client_urls: m.client_urls,
                            is_learner: m.is_learner,
                        },
                        endpoint,
                    }
                })
                .collect();
            (cid, members)
        }
        None => {
            // No member list: list what we tried, named after --initial-cluster where the host
            // matches. A learner answers a status but no member list.
            warnings.push(match answered.is_empty() {
                true => format!("{NO_LIST_WARNING}: no endpoint answered"),
                false => format!("{NO_LIST_WARNING}: the members that answered gave none (a learner gives none)"),
            });
            let names = manifest.map(Manifest::initial_cluster).unwrap_or_default();
            let mut seen = BTreeSet::new();
            let members = probes
                .iter()
                // The same member at two endpoints counts once.
                .filter(|p| p.status.as_ref().map_or(true, |s| seen.insert(s.member_id)))
                .map(|p| {
                    let host = crate::cli::url_host(&p.url);
                    let named = names.iter().find(|(_, peer)| crate::cli::url_host(peer) == host);
                    MemberStatus {
                        member: MemberRef {
                            id: p.status.as_ref().map_or(String::new(), |s| hex_id(s.member_id)),
                            name: named.map(|(n, _)| n.clone()).unwrap_or_default(),
                            peer_urls: named.map(|(_, u)| vec![u.clone()]).unwrap_or_default(),
                            client_urls: vec![p.url.clone()],
                            is_learner: p.status.as_ref().is_ok_and(|s| s.is_learner),
                        },
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
    let reachable: Vec<&&MemberStatus> = voters.iter().filter(|m| m.endpoint.reachable).collect();
    let leaderless: Vec<String> = reachable
        .iter()
        .filter(|m| answered.iter().any(|s| s.endpoint.url == m.endpoint.url && s.leader == 0))
        .map(|m| m.label())
        .collect();
    let mut quorum = Quorum::of_cluster(voters.len(), reachable.len(), reachable.len() - leaderless.len());
    // Only learners answered, and no list says who votes: one that names a leader says a quorum
    // worked lately (a learner never campaigns, so it keeps naming a leader that has gone; a
    // guessed voter that failed is then a sign against it, and the quorum stays lost).
    if list_cluster == 0 && voters.is_empty() && answered.iter().any(|s| s.leader != 0) {
        quorum.has_quorum = true;
    }
    if !leaderless.is_empty() {
        warnings.push(format!(
            "no leader known to {}: cut off from its peers (peer network, peer certificates), or an election is \
             under way",
            leaderless.join(", ")
        ));
    }
    // A learner never campaigns and keeps naming a leader that has gone: its word counts only
    // when no voter is known (as for the quorum above).
    let leader = answered
        .iter()
        .filter(|s| !s.is_learner || voters.is_empty())
        .map(|s| s.leader)
        .find(|&l| l != 0)
        .map(hex_id)
        .unwrap_or_default();
    let cluster_id = if cluster_id != 0 { cluster_id } else { answered.first().map_or(0, |s| s.cluster_id) };

    let mut alarms: Vec<AlarmStatus> = Vec::new();
    for a in answered.iter().flat_map(|s| s.alarms.iter()) {
        if !alarms.contains(a) {
            alarms.push(a.clone());
        }
    }

    for m in &members {
        let who = m.label();
        if !m.started {
            warnings.push(format!("member {who} was added but never started"));
        } else if let Some(err) = &m.endpoint.error {
            warnings.push(format!("member {who} unreachable at {}: {err}", m.endpoint.url));
        }
        if m.is_learner {
            warnings.push(format!(
                "member {who} is a learner (not promoted): etcd-member join on its node finishes it, or etcd-member \
                 promote {} once it is in sync",
                m.id
            ));
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
            "quorum lost: {} of {} voters reachable{}, {} needed",
            quorum.reachable_voters,
            quorum.voters,
            if leaderless.is_empty() { String::new() } else { format!(" ({} without a leader)", leaderless.len()) },
            quorum.needed
        ));
        // A voter here follows a leader, which etcd's check-quorum keeps only while a majority
        // answers it (for an election timeout or two after the loss): the majority may work
        // beyond this host's reach (a firewall on the client port, a partition).
        if !leader.is_empty() && quorum.voters > 0 {
            warnings.push(format!(
                "yet a voter that answers here follows leader {leader}: a majority may work beyond this host's \
                 reach (client port filtered, a partition), or it has just been lost; ask from another node before \
                 any quorum recovery"
            ));
        }
    }
    ClusterStatus {
        kind: "ClusterStatus".into(),
        taken_at: crate::time::rfc3339_secs(crate::time::now_secs()),
        cluster_id: if cluster_id == 0 { String::new() } else { hex_id(cluster_id) },
        leader,
        members,
        alarms,
        quorum,
        local: None,
        warnings,
    }
}

/// The whole picture and how the asking went.
pub struct Survey {
    pub status: ClusterStatus,
    pub probes: Vec<Probe>,
    /// The endpoints were given (flag/env), not found.
    pub explicit: bool,
}

impl Survey {
    /// Every endpoint's error, when none answered.
    pub fn nobody_answered(&self) -> bool {
        self.probes.iter().all(|p| p.status.is_err())
    }

    pub fn failures(&self) -> Vec<&EndpointError> {
        self.probes.iter().filter_map(|p| p.status.as_ref().err()).collect()
    }

    /// `url: error; ...` for every endpoint that failed.
    pub fn describe_failures(&self) -> String {
        let all: Vec<String> = self
            .probes
            .iter()
            .filter_map(|p| p.status.as_ref().err().map(|e| format!("{}: {}", p.url, e.message)))
            .collect();
        all.join("; ")
    }

    /// `url: error` of each endpoint our TLS setup failed with. Such a member may well be alive:
    /// a procedure that needs members down must not count it as down.
    pub fn tls_failures(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter_map(|p| {
                p.status.as_ref().err().filter(|e| e.kind == FailKind::Tls).map(|e| format!("{}: {e}", p.url))
            })
            .collect()
    }

    /// `(learner's URL, leader ID)` for each learner of this cluster that names a leader. A learner
    /// never campaigns and keeps naming its last leader, alive or gone: its word is neither proof
    /// of a working majority nor of none (so it is not the picture's `leader` beside voters).
    pub fn learners_naming_a_leader(&self) -> Vec<(String, String)> {
        let cluster = &self.status.cluster_id;
        let answered = self.probes.iter().filter_map(|p| p.status.as_ref().ok().map(|s| (&p.url, s)));
        answered
            .filter(|(_, s)| s.is_learner && s.leader != 0 && crate::report::hex_id(s.cluster_id) == *cluster)
            .map(|(url, s)| (url.clone(), crate::report::hex_id(s.leader)))
            .collect()
    }

    /// Whether member `id` (hex) answered here naming no leader: it leads no one now.
    pub fn answers_without_a_leader(&self, id: &str) -> bool {
        let answered = self.probes.iter().filter_map(|p| p.status.as_ref().ok());
        answered.filter(|s| crate::report::same_id(&crate::report::hex_id(s.member_id), id)).any(|s| s.leader == 0)
    }

    /// Whether asking `url` failed on our TLS setup (the member may be alive).
    pub fn tls_failed(&self, url: &str) -> bool {
        self.probes.iter().any(|p| p.url == url && p.status.as_ref().err().is_some_and(|e| e.kind == FailKind::Tls))
    }

    pub fn all_failed_with(&self, kind: FailKind) -> bool {
        self.nobody_answered() && self.failures().iter().all(|e| e.kind == kind)
    }

    /// The error of a procedure that needs a live cluster when none answered: exit 7 when every
    /// endpoint timed out (frozen or unroutable members may come back), else 4.
    pub fn unreachable(&self) -> anyhow::Error {
        // Only the default asked (no endpoints given, no manifest or member data here to say
        // where the members are): that says nothing of the cluster's quorum.
        if self.only_the_default() {
            return crate::exit::coded(
                crate::exit::ERROR,
                format!(
                    "nothing answered at {} ({}), and nothing on this node says where the members are (no \
                     manifest, none a clean set aside, no member data): give --endpoints",
                    crate::cli::DEFAULT_ENDPOINT,
                    self.describe_failures()
                ),
            );
        }
        let code =
            if self.all_failed_with(FailKind::Timeout) { crate::exit::TIMEOUT } else { crate::exit::QUORUM_LOST };
        crate::exit::coded(code, format!("no endpoint reachable: {}", self.describe_failures()))
    }

    /// The endpoints were neither given nor found: the default alone was asked.
    pub fn only_the_default(&self) -> bool {
        !self.explicit && self.probes.len() == 1 && self.probes[0].url == crate::cli::DEFAULT_ENDPOINT
    }
}

/// Asks the cluster: endpoints from the flags, else the manifest, else the default.
pub fn survey(shared: &Shared, manifest: Option<&Manifest>) -> Result<Survey> {
    let (seeds, explicit) = seed_endpoints(shared, manifest);
    log::info!("endpoints {seeds:?} ({})", if explicit { "given" } else { "found" });
    let dialer = Dialer::new(shared, seeds.iter().any(|s| s.starts_with("https://")))?;
    let rt = crate::client::runtime()?;
    let own = manifest.map(Manifest::client_urls).unwrap_or_default();
    let (probes, list) = rt.block_on(gather(&dialer, &seeds, &own));
    let status = assemble(&probes, list, manifest);
    Ok(Survey { status, probes, explicit })
}

/// [`survey`] for a node whose own etcd may be down: when nothing at the manifest's addresses
/// answers (its `--initial-cluster` may name this node alone, as on kubeadm's first node), the
/// members this node's db last knew are asked too, also when the endpoints were given (an
/// `ETCDCTL_ENDPOINTS` left in the shell at this node's dead etcd must not hide a live majority
/// from the checks that guard a recovery).
/// Without a manifest, the db's members alone are where to look.
/// When still nobody answers, the members are those the db lists (with their IDs, names and
/// roles: what a manifest's --initial-cluster may not say), in the cluster its WAL names.
pub fn survey_with_known(shared: &Shared, manifest: Option<&Manifest>, data_dir: &std::path::Path) -> Result<Survey> {
    let survey = survey(shared, manifest)?;
    if !survey.nobody_answered() {
        return Ok(survey);
    }
    let port = manifest.map_or_else(|| "2379".into(), client_port);
    let db = crate::disk::inspect::read_db(&data_dir.join("member/snap/db")).ok();
    let known = db.as_ref().map(|db| known_client_urls(db, &port)).unwrap_or_default();
    let mut survey = match known.is_empty() {
        true => survey,
        false => {
            let mut wider = shared.clone();
            wider.endpoints = Some(known);
            crate::cluster::survey(&wider, manifest).unwrap_or(survey)
        }
    };
    if survey.nobody_answered()
        && let Some(list) = db.as_ref().and_then(|db| recorded_list(db, data_dir, &port))
    {
        survey.status = assemble(&survey.probes, Some(list), manifest);
        survey.status.warnings.insert(
            0,
            format!(
                "{NO_LIST_WARNING}: no endpoint answered; the members listed are those {} last recorded",
                data_dir.display()
            ),
        );
    }
    Ok(survey)
}

/// The cluster as seen from this node when no endpoints are given: asked where its manifest
/// says, else where the manifest the last clean moved aside says (a cleaned node), and when
/// nothing answers there, at the members its data dir (or the cleaned one) last recorded. Given
/// endpoints are asked alone: the picture asked for.
pub fn survey_of_node(shared: &Shared, manifest: Option<&Manifest>) -> Result<Survey> {
    if shared.endpoints.is_some() {
        return survey(shared, manifest);
    }
    // A clean moved the data away too: a node whose data is in place (its manifest moved out by
    // hand) is seen from that data, not from an older clean's backup.
    let default = crate::manifest::default_data_dir(&shared.rootfs);
    let cleaned_path = match manifest {
        Some(_) => None,
        None if default.join("member").is_dir() => None,
        None => crate::backup::last_cleaned_manifest(&crate::backup::backup_root(shared, None)),
    };
    let cleaned = cleaned_path.as_deref().and_then(|p| Manifest::load(p).ok());
    let seed = manifest.or(cleaned.as_ref());
    let data_dir = match seed {
        Some(m) => match m.data_dir(&shared.rootfs) {
            Ok(d) => d,
            Err(_) => return survey(shared, seed),
        },
        None => default,
    };
    // A cleaned node's data dir went beside its manifest.
    let moved = cleaned_path.as_deref().and_then(|p| Some(p.parent()?.join(data_dir.file_name()?)));
    survey_with_known(shared, seed, &moved.filter(|d| d.is_dir()).unwrap_or(data_dir))
}

/// The member list this node's data dir last recorded: the cluster its WAL names and the db's
/// members, a started one's client URL guessed (its peer host on `port`) where the db keeps none.
fn recorded_list(db: &DbState, data_dir: &std::path::Path, port: &str) -> Option<(u64, Vec<MemberInfo>)> {
    let cluster_id = crate::disk::inspect::read_wal(&data_dir.join("member/wal")).map_or(0, |w| w.cluster_id);
    let members: Vec<MemberInfo> = db
        .members
        .iter()
        .map(|x| MemberInfo {
            id: x.id,
            name: x.name.clone(),
            peer_urls: x.peer_urls.clone(),
            client_urls: match (x.client_urls.is_empty(), x.name.is_empty()) {
                (true, false) => x.peer_urls.iter().filter_map(|p| on_port(p, port)).collect(),
                _ => x.client_urls.clone(),
            },
            is_learner: x.is_learner,
        })
        .collect();
    (!members.is_empty()).then_some((cluster_id, members))
}

/// The client URLs of the members this node's db lists (their peer hosts on this node's client
/// `port` when the db keeps no client URLs): where the rest of the cluster was.
fn known_client_urls(db: &DbState, port: &str) -> Vec<String> {
    let mut urls: Vec<String> = db
        .members
        .iter()
        .flat_map(|x| match x.client_urls.is_empty() {
            false => x.client_urls.clone(),
            true => x.peer_urls.iter().filter_map(|p| on_port(p, port)).collect(),
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// This node's member in the list: by one of its peer URLs (`--initial-advertise-peer-urls` may
/// list several; etcd keeps peer URLs unique), else by name. etcd allows a name twice (this node
/// rebuilt under its hostname before the old member went): by name, one that answers comes first,
/// so that clean refuses rather than stop a live member it could not tell apart.
pub fn own_member<'a>(members: &'a [MemberStatus], name: &str, peers: &str) -> Option<&'a MemberStatus> {
    let peers = crate::cli::split_list(peers);
    let by_peer = members.iter().find(|x| x.peer_urls.iter().any(|u| peers.contains(u)));
    let named: Vec<&MemberStatus> = members.iter().filter(|x| !name.is_empty() && x.name == name).collect();
    by_peer.or_else(|| named.iter().find(|x| x.endpoint.reachable).or(named.first()).copied())
}

/// Something in the cluster is unhealthy though it may work: a member unreachable or never
/// started, a learner, errors a member reports, an alarm.
pub fn is_degraded(s: &ClusterStatus) -> bool {
    s.members.iter().any(|m| !m.started || !m.endpoint.reachable || m.is_learner || !m.endpoint.errors.is_empty())
        || !s.alarms.is_empty()
        || s.warnings.iter().any(|w| w.starts_with(NO_LIST_WARNING) || w.contains(FOREIGN_WARNING))
}

/// Polls one member until it answers with a leader known; returns (member ID, revision).
pub fn wait_member(shared: &Shared, url: &str, timeout: std::time::Duration) -> Result<(u64, i64)> {
    let dialer = Dialer::new(shared, url.starts_with("https://"))?;
    let rt = crate::client::runtime()?;
    let deadline = std::time::Instant::now() + timeout;
    let mut last;
    loop {
        let answer = rt.block_on(async {
            let mut c = dialer.connect(url).await?;
            dialer.call(c.status()).await
        });
        match answer {
            Ok(s) if s.leader() != 0 => {
                let h = s.header();
                return Ok((h.map_or(0, |h| h.member_id()), h.map_or(0, |h| h.revision())));
            }
            Ok(_) => last = "no leader yet".into(),
            Err(e) => last = e.message,
        }
        if std::time::Instant::now() >= deadline {
            return Err(crate::exit::coded(
                crate::exit::TIMEOUT,
                format!("{url} not healthy within {timeout:?}: {last}"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// A client on a reachable voter, the leader first: membership changes go through it. The members
/// in `avoid` (the ones a removal takes out, whose server then stops) only as a last resort.
pub async fn connect_healthy(
    dialer: &Dialer,
    s: &ClusterStatus,
    avoid: &[&str],
) -> Result<(etcd_client::Client, String)> {
    let mut candidates: Vec<&MemberStatus> =
        s.members.iter().filter(|m| m.endpoint.reachable && !m.is_learner).collect();
    candidates.sort_by_key(|m| (avoid.contains(&m.id.as_str()), !m.endpoint.is_leader));
    let mut errors = Vec::new();
    for m in candidates {
        match dialer.connect(&m.endpoint.url).await {
            Ok(c) => return Ok((c, m.endpoint.url.clone())),
            Err(e) => errors.push(format!("{}: {e}", m.endpoint.url)),
        }
    }
    Err(crate::exit::coded(
        crate::exit::QUORUM_LOST,
        format!("no reachable voter to make the change through ({})", errors.join("; ")),
    ))
}

/// The member list as the change documents show it.
pub fn member_refs(list: &[etcd_client::Member]) -> Vec<MemberRef> {
    list.iter()
        .map(|m| MemberRef {
            id: hex_id(m.id()),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        })
        .collect()
}

pub fn member_ref(m: &MemberStatus) -> MemberRef {
    m.member.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What member `id` at 10.0.0.`host` answers: its cluster, its leader, learner or not.
    fn answer(host: u64, id: u64, cluster_id: u64, leader: u64, is_learner: bool) -> Probe {
        Probe {
            url: format!("https://10.0.0.{host}:2379"),
            status: Ok(StatusInfo {
                alarms: vec![],
                member_id: id,
                cluster_id,
                leader,
                is_learner,
                endpoint: EndpointStatus {
                    url: format!("https://10.0.0.{host}:2379"),
                    reachable: true,
                    ..Default::default()
                },
            }),
            members: None,
        }
    }

    /// Three voters that all answer, as when their peer traffic is cut: with no leader among
    /// them there is no working majority (exit 4 from etcd-status), though all are reachable.
    #[test]
    fn answering_without_a_leader_is_no_quorum() {
        let probe = |id: u64, leader: u64| answer(id, id, 7, leader, false);
        let list = || {
            let info = |id: u64| MemberInfo {
                id,
                name: format!("n{id}"),
                peer_urls: vec![format!("https://10.0.0.{id}:2380")],
                client_urls: vec![format!("https://10.0.0.{id}:2379")],
                is_learner: false,
            };
            Some((7, vec![info(1), info(2), info(3)]))
        };
        let cut = assemble(&[probe(1, 0), probe(2, 0), probe(3, 0)], list(), None);
        assert!(!cut.quorum.has_quorum, "{:?}", cut.quorum);
        assert_eq!((cut.quorum.reachable_voters, cut.quorum.fault_tolerance), (3, 0));
        assert!(cut.warnings.iter().any(|w| w.contains("no leader known to n1 (")), "{:?}", cut.warnings);
        // One member cut off alone: the other two still make a quorum, with no fault tolerance.
        let one = assemble(&[probe(1, 2), probe(2, 2), probe(3, 0)], list(), None);
        assert!(one.quorum.has_quorum);
        assert_eq!((one.quorum.reachable_voters, one.quorum.fault_tolerance), (3, 0));
        // Only one answers here, following a leader: quorum lost as seen from here, and said to
        // be maybe only from here.
        let from_here = assemble(&[probe(1, 2)], list(), None);
        assert!(!from_here.quorum.has_quorum);
        assert!(
            from_here
                .warnings
                .iter()
                .any(|w| w.contains("follows leader 0000000000000002: a majority may work beyond")),
            "{:?}",
            from_here.warnings
        );
        assert!(!cut.warnings.iter().any(|w| w.contains("a majority may work")), "{:?}", cut.warnings);
        let all = assemble(&[probe(1, 2), probe(2, 2), probe(3, 2)], list(), None);
        assert_eq!((all.quorum.has_quorum, all.quorum.fault_tolerance), (true, 1));
        assert!(!is_degraded(&all));

        // Node 3 restored alone (a new cluster 9, a new member 30 of its own, its own leader): it
        // is not this cluster's member 3, and its leader and alarms are not this cluster's.
        let mut restored = answer(3, 30, 9, 30, false);
        if let Ok(s) = restored.status.as_mut() {
            s.alarms.push(AlarmStatus { member_id: hex_id(30), alarm: "NOSPACE".into() });
        }
        let split = assemble(&[probe(1, 2), probe(2, 2), restored], list(), None);
        let m3 = &split.members[2].endpoint;
        assert!(!m3.reachable && m3.error.as_deref().is_some_and(|e| e.contains("of another cluster")), "{m3:?}");
        assert_eq!(split.leader, hex_id(2));
        assert!(split.alarms.is_empty(), "{:?}", split.alarms);
        assert!(split.warnings.iter().any(|w| w.contains(FOREIGN_WARNING)), "{:?}", split.warnings);
        assert!(is_degraded(&split));
    }

    /// A voter and a learner survive a quorum loss: the learner still names the gone leader, which
    /// is no leader of this cluster (recover refused "a member follows a leader" for it).
    #[test]
    fn a_learner_does_not_vouch_for_a_leader_among_voters() {
        let info = |id: u64, is_learner: bool| MemberInfo {
            id,
            name: format!("n{id}"),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
            client_urls: vec![format!("https://10.0.0.{id}:2379")],
            is_learner,
        };
        let list = || Some((7, vec![info(1, false), info(2, false), info(3, false), info(4, true)]));
        let probes = vec![answer(1, 1, 7, 0, false), answer(4, 4, 7, 2, true), answer(5, 5, 9, 3, true)];
        let s = assemble(&probes, list(), None);
        assert_eq!(s.leader, "", "{s:?}");
        assert!(!s.quorum.has_quorum);
        // Named apart, for recover to ask the operator (another cluster's learner is not asked).
        let survey = Survey { status: s, probes, explicit: true };
        assert_eq!(survey.learners_naming_a_leader(), [("https://10.0.0.4:2379".to_string(), hex_id(2))]);
        assert!(survey.answers_without_a_leader(&hex_id(1)) && !survey.answers_without_a_leader(&hex_id(2)));
        // A voter that names it: the leader is known.
        let s = assemble(&[answer(1, 1, 7, 2, false), answer(4, 4, 7, 2, true)], list(), None);
        assert_eq!(s.leader, hex_id(2));
    }

    /// Beside a node restored alone, each side sees its own cluster whichever answers first: the
    /// earliest seed's list (this node's own member) among those that follow a leader.
    #[test]
    fn the_list_is_the_first_led_seeds() {
        let listed = |seed: usize, led: bool, cluster: u64| Listed { seed, led, list: (cluster, vec![]) };
        let pick = |l: Vec<Listed>| choose(l, None).map(|c| c.0);
        assert_eq!(pick(vec![listed(1, true, 9), listed(0, true, 7)]), Some(7));
        assert_eq!(pick(vec![listed(0, false, 7), listed(2, true, 9)]), Some(9), "a cut-off member's list is last");
        assert_eq!(pick(vec![listed(3, false, 7), listed(1, false, 9)]), Some(9));
        assert_eq!(pick(vec![]), None);
        // --endpoints naming the restored node first: this node's own member's cluster all the same.
        let own = |l: Vec<Listed>| choose(l, Some(7)).map(|c| c.0);
        assert_eq!(own(vec![listed(0, true, 9), listed(1, true, 7)]), Some(7));
        assert_eq!(own(vec![listed(0, true, 9), listed(1, false, 7)]), Some(7));
    }

    /// No member list (a learner gives none): the learner is one, counted once however many of
    /// its URLs were asked, and the picture is degraded, not healthy; its leader says a quorum works.
    #[test]
    fn a_learner_alone_gives_a_partial_picture() {
        let failed = Probe {
            url: "https://10.0.0.9:2379".into(),
            status: Err(EndpointError { kind: FailKind::Timeout, message: "context deadline exceeded".into() }),
            members: None,
        };
        let s = assemble(&[answer(4, 4, 7, 2, true), failed], None, None);
        assert!(!s.quorum.has_quorum, "a voter that fails speaks against a learner's (maybe stale) leader");
        let s = assemble(&[answer(4, 4, 7, 2, true), answer(5, 4, 7, 2, true)], None, None);
        assert_eq!(s.members.len(), 1, "{:?}", s.members);
        assert!(s.members[0].is_learner);
        assert!(s.quorum.has_quorum);
        assert!(
            s.warnings.iter().any(|w| w.starts_with(NO_LIST_WARNING) && w.contains("a learner")),
            "{:?}",
            s.warnings
        );
        assert!(is_degraded(&s));
    }

    #[test]
    fn hang_ups_after_the_handshake_are_tls_failures() {
        let other = |m: &str| EndpointError { kind: FailKind::Other, message: m.into() };
        for seen in [
            "grpc request error: transport error: connection closed",
            "transport error: stream closed because of a broken pipe",
            "operation was canceled: connection was not ready",
            "Connection reset by peer (os error 104)",
        ] {
            let e = closed_after_handshake("https://10.0.0.1:2379", other(seen));
            assert_eq!(e.kind, FailKind::Tls, "{seen}");
            assert!(e.message.contains("rejects the client certificate") && e.message.contains(seen), "{e}");
            // Plaintext has no handshake to blame.
            assert_eq!(closed_after_handshake("http://10.0.0.1:2379", other(seen)).kind, FailKind::Other);
        }
        let refused = other("tcp connect error: Connection refused (os error 111)");
        assert_eq!(closed_after_handshake("https://10.0.0.1:2379", refused).kind, FailKind::Other);
    }

    #[test]
    fn alarms_from_status_errors() {
        let a = parse_alarm("memberID:10276657743932975437 alarm:NOSPACE ").unwrap();
        assert_eq!(a, AlarmStatus { member_id: "8e9e05c52164694d".into(), alarm: "NOSPACE".into() });
        assert_eq!(parse_alarm("memberID:1 alarm:CORRUPT").unwrap().alarm, "CORRUPT");
        assert_eq!(parse_alarm("etcdserver: no leader"), None);
    }
}
