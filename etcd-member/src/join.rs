//! `join` on the node that (re)joins: the runbook's `kubeadm join phase control-plane-join etcd`.
//! Learner add, static manifest with `--initial-cluster-state=existing`, promotion once in sync.
//! Every precondition is checked before the first change; a member that never starts is undone.

use anyhow::{Context, Result, anyhow};
use common::backup::backup_root;
use common::cli::{self, HasShared, Shared};
use common::client::Dialer;
use common::cluster::{self, member_refs};
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::nodelock::NodeLock;
use common::report::{ClusterStatus, MemberChange, MemberRef, MemberStatus, Plan, hex_id};
use etcd_client::{Client, MemberAddOptions};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

common::with_shared_flags! {
    changing
    /// on the node that joins: add it as a learner, write its manifest, promote it once in sync
    #[argh(
        subcommand,
        name = "join",
        example = "On the cleaned node, from its old manifest kept aside by clean:\n  $ etcd-member join --yes --template /var/lib/etcd-recovery/20261123T203332Z/etcd.yaml"
    )]
    pub struct JoinArgs {
        /// member name (default: the template manifest's --name)
        #[argh(option)]
        pub name: Option<String>,
        /// this node's IP address (default: the host of the template's --initial-advertise-peer-urls)
        #[argh(option)]
        pub advertise_address: Option<String>,
        /// manifest to start from (default: the one the last `etcd-member clean` on this node moved aside)
        #[argh(option)]
        pub template: Option<String>,
        /// image of a generated manifest, when there is no template (default: the repository of this
        /// node's kube-apiserver image, /etcd:<the cluster's version>-0)
        #[argh(option)]
        pub image: Option<String>,
        /// the backup root `clean` used (default <rootfs>/var/lib/etcd-recovery)
        #[argh(option)]
        pub backup_dir: Option<String>,
        /// how long the new member may take to start and catch up (default 120s)
        #[argh(option, default = "String::from(\"120s\")")]
        pub timeout: String,
    }
}

/// An IP as it appears in a URL (IPv6 in brackets).
fn url_host(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn url(ip: &IpAddr, port: u16) -> String {
    format!("https://{}:{port}", url_host(ip))
}

/// A URL list with every URL whose host is `old` moved to `new` (whole hosts: 10.0.0.1 is not a
/// part of 110.0.0.12); scheme, port and the other URLs stay.
fn rehost(list: &str, old: &str, new: &IpAddr) -> String {
    let moved = |u: &String| {
        let Some((scheme, rest)) = u.split_once("://") else { return u.clone() };
        if cli::url_host(u) != old {
            return u.clone();
        }
        let host_end = match rest.strip_prefix('[') {
            Some(r) => r.find(']').map_or(rest.len(), |i| i + 2),
            None => rest.rfind(':').unwrap_or(rest.len()),
        };
        format!("{scheme}://{}{}", url_host(new), &rest[host_end..])
    };
    cli::split_list(list).iter().map(moved).collect::<Vec<_>>().join(",")
}

/// Without a template: the manifest `kubeadm join` would write, for --name and --advertise-address.
fn generated_manifest(args: &JoinArgs, shared: &Shared, live: &ClusterStatus, root: &Path) -> Result<Manifest> {
    let (Some(name), Some(addr)) = (&args.name, &args.advertise_address) else {
        return Err(coded(
            exit::USAGE,
            format!(
                "no template manifest (none in {}, where etcd-member clean puts it): give --template, or --name and \
                 --advertise-address to generate one",
                root.display()
            ),
        ));
    };
    let ip: IpAddr =
        addr.parse().map_err(|_| coded(exit::USAGE, format!("--advertise-address {addr:?}: not an IP address")))?;
    let image = match &args.image {
        Some(i) => i.clone(),
        None => {
            let manifests_dir = shared.manifest.parent().unwrap_or(Path::new("/"));
            let version = live.members.iter().map(|m| m.endpoint.version.as_str()).find(|v| !v.is_empty());
            match (common::manifest::image_repository(manifests_dir), version) {
                (Some(repo), Some(v)) => format!("{repo}/etcd:{v}-0"),
                _ => {
                    return Err(coded(
                        exit::USAGE,
                        format!(
                            "no --image, and no kube-apiserver.yaml in {} to take the repository from",
                            manifests_dir.display()
                        ),
                    ));
                }
            }
        }
    };
    let host = url_host(&ip);
    let text = common::manifest::render_kubeadm(&common::manifest::KubeadmEtcd {
        name,
        host: &host,
        image: &image,
        initial_cluster: "",
        existing: true,
    });
    Manifest::parse(&shared.manifest, &text)
}

/// etcd's default --quota-backend-bytes: 2 GiB.
const DEFAULT_QUOTA_BYTES: i64 = 2 << 30;

/// Written by every join (see where it is set).
const JOINED_AT_ANNOTATION: &str = "etcd-recovery/joined-at";
/// The member a join wrote its manifest for: a rerun resumes only that one (an older join's
/// manifest left in place with its data would start a re-added member on a removed one's data).
const JOINED_MEMBER_ANNOTATION: &str = "etcd-recovery/joined-member";

/// Room for a new member's WAL beside its db: two of etcd's preallocated 64 MiB segments.
const WAL_ROOM: u64 = 2 * 64 * 1024 * 1024;

/// A manifest a join of this member wrote: `existing`, this name and peer URL, and the join's
/// annotation (every manifest `kubeadm join` wrote has the rest: taking one for ours would skip
/// the empty-data-dir check and start etcd on a removed member's data).
fn written_by_a_join(m: &Manifest, name: &str, advertised: Option<&str>) -> bool {
    m.flag("initial-cluster-state").as_deref() == Some("existing")
        && m.flag("initial-advertise-peer-urls").as_deref() == advertised
        && m.flag("name").as_deref() == Some(name)
        && m.annotations.contains_key(JOINED_AT_ANNOTATION)
}

/// Where the member stands before we start.
enum Existing {
    None,
    /// Added but never started: reuse it.
    Unstarted(u64),
    /// A previous join wrote its manifest, but the learner never started: promote it, after
    /// bringing the manifest's `--initial-cluster` up to date if the members changed meanwhile
    /// (else etcd refuses to start: its list must match the cluster's).
    Written(u64),
    /// A previous join started the learner: promote it.
    StartedLearner(u64),
    /// Joined already.
    Voter,
}

struct Prepared {
    manifest: Manifest,
    name: String,
    peer_url: String,
    data_dir: PathBuf,
    existing: Existing,
    plan: Plan,
}

fn prepare(args: &JoinArgs, shared: &Shared, live: &ClusterStatus, template: Manifest) -> Result<Prepared> {
    let mut m = template;
    let name = match args.name.clone().or_else(|| m.flag("name")) {
        Some(n) if !n.is_empty() => n,
        _ => return Err(coded(exit::USAGE, "no member name: give --name")),
    };
    let old_host = m.flag("initial-advertise-peer-urls").map(|u| cli::url_host(&u).to_string()).unwrap_or_default();
    let ip_text = args.advertise_address.clone().unwrap_or_else(|| old_host.clone());
    let ip: IpAddr = ip_text
        .parse()
        .map_err(|_| coded(exit::USAGE, format!("--advertise-address {ip_text:?}: not an IP address")))?;
    // A template from another node: its addresses become ours.
    if !old_host.is_empty() && old_host != ip.to_string() {
        for flag in [
            "advertise-client-urls",
            "initial-advertise-peer-urls",
            "listen-client-urls",
            "listen-peer-urls",
            "listen-metrics-urls",
        ] {
            if let Some(v) = m.flag(flag) {
                m.set_flag(flag, &rehost(&v, &old_host, &ip))?;
            }
        }
        let client = m.flag("advertise-client-urls").unwrap_or_else(|| url(&ip, 2379));
        m.set_annotation(common::manifest::CLIENT_URLS_ANNOTATION, &client)?;
    }
    // The learner is added with the URL its etcd will advertise (the template's port, not 2380
    // by assumption), else etcd refuses to start as that member.
    let peer_url = match m.flag("initial-advertise-peer-urls").map(|v| cli::split_list(&v)) {
        Some(urls) if !urls.is_empty() => urls[0].clone(),
        _ => {
            m.set_flag("initial-advertise-peer-urls", &url(&ip, 2380))?;
            url(&ip, 2380)
        }
    };
    m.set_flag("name", &name)?;
    let advertised = m.flag("initial-advertise-peer-urls");
    let data_dir = m.data_dir(&shared.rootfs)?;
    let manifest_in_place = shared.manifest.exists();
    // The manifest an interrupted join of this same member wrote (killed before the learner started).
    let ours_in_place =
        Manifest::load(&shared.manifest).ok().filter(|m| written_by_a_join(m, &name, advertised.as_deref()));

    let mine = live.members.iter().find(|x| x.peer_urls.contains(&peer_url));
    let mut plan_refresh = false;
    let existing = match (mine, &ours_in_place) {
        (None, _) => Existing::None,
        (Some(x), Some(written))
            if !x.started
                && written
                    .annotations
                    .get(JOINED_MEMBER_ANNOTATION)
                    .is_some_and(|m| common::report::same_id(m, &x.id)) =>
        {
            let members: Vec<MemberRef> = live.members.iter().map(cluster::member_ref).collect();
            if stale_initial_cluster(written, &initial_cluster(&members, &x.id, &name)) {
                plan_refresh = true;
            }
            Existing::Written(common::report::parse_hex_id(&x.id).unwrap_or(0))
        }
        (Some(x), _) if !x.started => Existing::Unstarted(common::report::parse_hex_id(&x.id).unwrap_or(0)),
        (Some(x), _) if x.is_learner && manifest_in_place => {
            Existing::StartedLearner(common::report::parse_hex_id(&x.id).unwrap_or(0))
        }
        (Some(x), _) if !x.is_learner && manifest_in_place && x.name == name => Existing::Voter,
        (Some(_), _) => Existing::None,
    };

    let mut plan = Plan::new("etcd-member join");
    common::manifest::rivals_check(&mut plan, &shared.manifest);
    common::manifest::hidden_check(&mut plan, &m, None);
    let now = common::time::now_secs();
    let pki = |flag: &str| m.flag(flag).map(|p| m.host_path(&shared.rootfs, &p));
    let ca = pki("trusted-ca-file").unwrap_or_else(|| shared.tls.ca.clone());
    let certs = [
        ("server certificate", pki("cert-file"), true),
        ("peer certificate", pki("peer-cert-file"), true),
        ("healthcheck-client certificate", Some(shared.tls.cert.clone()), false),
    ];
    for (what, path, needs_ip) in certs {
        let result = match &path {
            Some(p) => common::pki::check_leaf(p, &ca, now, needs_ip.then_some(ip)),
            None => Err(anyhow!("the template names none")),
        };
        let detail = match (&result, &path) {
            (Ok(()), Some(p)) => format!(
                "{} chains to {}, valid{}",
                p.display(),
                ca.display(),
                if needs_ip { format!(", SAN {ip}") } else { String::new() }
            ),
            (Err(e), _) => format!("{e:#}"),
            (Ok(()), None) => unreachable!(),
        };
        plan.check(what, result.is_ok(), detail);
    }
    if matches!(existing, Existing::Written(_) | Existing::StartedLearner(_) | Existing::Voter) {
        plan.check("data dir", true, format!("{} belongs to the member being joined", data_dir.display()));
    } else {
        plan.check(
            "data dir is empty or absent",
            common::backup::empty_or_absent(&data_dir),
            data_dir.display().to_string(),
        );
        plan.check(
            "no manifest in place",
            !manifest_in_place,
            format!(
                "{} {}",
                shared.manifest.display(),
                if manifest_in_place { "exists: run etcd-member clean first" } else { "absent" }
            ),
        );
    }
    plan.check(
        "cluster has quorum",
        live.quorum.has_quorum,
        format!(
            "{} of {} voters reachable, {} needed",
            live.quorum.reachable_voters, live.quorum.voters, live.quorum.needed
        ),
    );
    let pending: Vec<String> = live
        .members
        .iter()
        .filter(|x| (x.is_learner || !x.started) && !x.peer_urls.contains(&peer_url))
        .map(|x| format!("{} {}", x.id, x.peer_urls.join(",")))
        .collect();
    plan.check(
        "no other learner pending",
        pending.is_empty(),
        if pending.is_empty() { "none".into() } else { pending.join("; ") },
    );
    let clash: Vec<&MemberStatus> = live
        .members
        .iter()
        .filter(|x| x.started && (x.name == name || x.peer_urls.contains(&peer_url)))
        .filter(|_| !matches!(existing, Existing::Written(_) | Existing::StartedLearner(_) | Existing::Voter))
        .collect();
    // The old member of this node, still listed (the runbook removes it before the join): the
    // way on is said with the ID to remove.
    let detail = match clash.is_empty() {
        true => format!("{name} {peer_url}"),
        false => format!(
            "started already: {}; if that is this node's old member, remove it first (etcd-member remove {})",
            clash
                .iter()
                .map(|x| format!("{} ({}) {}", x.name, x.id, x.peer_urls.join(",")))
                .collect::<Vec<_>>()
                .join("; "),
            clash.iter().map(|x| x.id.as_str()).collect::<Vec<_>>().join(" ")
        ),
    };
    plan.check("name and peer URL are not a started member", clash.is_empty(), detail);
    match existing {
        Existing::None => plan.step("member add --learner", peer_url.clone(), true),
        Existing::Unstarted(id) => plan.step("reuse unstarted member", format!("{} {peer_url}", hex_id(id)), false),
        _ => {}
    }
    if matches!(existing, Existing::None | Existing::Unstarted(_)) {
        plan.step(
            "write manifest",
            format!(
                "{} with --initial-cluster of every member and --initial-cluster-state=existing",
                shared.manifest.display()
            ),
            true,
        );
    }
    if plan_refresh {
        plan.step(
            "refresh --initial-cluster",
            format!("{}: the members changed since it was written", shared.manifest.display()),
            true,
        );
    }
    plan.step("wait and promote", "until the learner runs and is in sync with the leader", true);
    plan.step("verify", "a started, reachable voter in a healthy cluster", false);
    Ok(Prepared { manifest: m, name, peer_url, data_dir, existing, plan })
}

/// Whether a manifest's `--initial-cluster` lists other members than `current` (order aside).
fn stale_initial_cluster(m: &Manifest, current: &str) -> bool {
    let sorted = |list: &str| {
        let mut v = cli::split_list(list);
        v.sort();
        v
    };
    sorted(&m.flag("initial-cluster").unwrap_or_default()) != sorted(current)
}

/// `name=url,...` for every member, with this node's name on its (still nameless) entry.
pub(crate) fn initial_cluster(members: &[MemberRef], my_id: &str, my_name: &str) -> String {
    let mut parts = Vec::new();
    for m in members {
        let name = if m.id == my_id { my_name } else { m.name.as_str() };
        for u in &m.peer_urls {
            parts.push(format!("{name}={u}"));
        }
    }
    parts.join(",")
}

pub(crate) async fn list(dialer: &Dialer, client: &mut Client) -> Result<Vec<MemberRef>> {
    let r = dialer.call(client.member_list()).await.map_err(|e| anyhow!("member list: {e}"))?;
    Ok(member_refs(r.members()))
}

/// `member add --learner`. etcd refuses changes until every voter has been connected for a few
/// seconds ("unhealthy cluster", its strict reconfiguration check): wait that out.
pub(crate) async fn add_learner(
    dialer: &Dialer,
    client: &mut Client,
    peer_url: &str,
    deadline: Instant,
) -> Result<u64> {
    loop {
        let opts = MemberAddOptions::new().with_is_learner();
        match dialer.call(client.member_add(vec![peer_url.to_string()], Some(opts))).await {
            Ok(r) => {
                return r.member().map(|m| m.id()).context("member add: no member in the answer");
            }
            Err(e) if e.message.contains("unhealthy cluster") && Instant::now() < deadline => {
                log::info!("member add: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // A slow commit: the add may have gone through all the same. Asked again only if not.
            Err(e) if e.kind == common::client::FailKind::Timeout && Instant::now() < deadline => {
                log::info!("member add: {e}; checking the member list");
                if let Ok(members) = list(dialer, client).await
                    && let Some(m) = members.iter().find(|m| m.peer_urls.iter().any(|u| u == peer_url))
                {
                    return common::report::parse_hex_id(&m.id).context("member add: bad member id in the list");
                }
            }
            Err(e) => return Err(anyhow!("member add --learner {peer_url}: {e}")),
        }
    }
}

/// Promotes once the learner has started and caught up; "already promoted" counts as success.
pub(crate) async fn promote(dialer: &Dialer, client: &mut Client, id: u64, deadline: Instant) -> Result<()> {
    let hid = hex_id(id);
    let mut last = String::from("not started yet");
    while Instant::now() < deadline {
        // A failed list (a leader change, a slow member) is retried like a refused promotion.
        let members = match list(dialer, client).await {
            Ok(m) => m,
            Err(e) => {
                last = format!("{e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        match members.iter().find(|m| m.id == hid) {
            None => return Err(anyhow!("member {hid} vanished from the member list")),
            Some(m) if !m.is_learner => return Ok(()),
            Some(m) if m.name.is_empty() => {}
            Some(_) => match dialer.call(client.member_promote(id)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.message.contains("in sync") || e.message.contains("not started") => last = e.message,
                Err(e) if e.message.contains("can only promote a learner member") => {}
                Err(e) => last = e.message,
            },
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(coded(exit::TIMEOUT, format!("member {hid} not promoted in time: {last}")))
}

pub fn run(args: JoinArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let timeout = cli::timeout_flag("timeout", &args.timeout)?;
    let mut lock = NodeLock::unless_dry_run(args.dry_run, &shared.manifest)?;
    let root = backup_root(&shared, args.backup_dir.as_deref());
    // The template: given, else the manifest the last clean set aside, else the one in place (an
    // interrupted join's, which its rerun finishes; or a node not cleaned, which the plan then
    // refuses saying so, rather than asking for flags a join would not need).
    let in_place = Manifest::load(&shared.manifest).ok();
    let template_path = args
        .template
        .as_ref()
        .map(PathBuf::from)
        .or_else(|| common::backup::last_cleaned_manifest(&root))
        .or_else(|| in_place.as_ref().map(|_| shared.manifest.clone()));
    let template = template_path.as_deref().map(Manifest::load).transpose()?;
    // Where the cluster is: the template's or the in-place manifest's URLs, else --endpoints
    // (the kubeadm default would only ask this node's own etcd, which is not running).
    let seed = template.as_ref().or(in_place.as_ref());
    if seed.is_none() && shared.endpoints.is_none() {
        return Err(coded(
            exit::USAGE,
            "no manifest to find the cluster from: give --endpoints (a live member's client URL) with --template, or \
             with --name and --advertise-address",
        ));
    }
    let survey = match seed {
        // A manifest may name only its own node (kubeadm's first node, a node restored alone):
        // then the members its data dir last knew are asked, the cleaned one beside its template.
        Some(m) => {
            let data_dir = m.data_dir(&shared.rootfs)?;
            let cleaned = template_path.as_deref().and_then(|t| Some(t.parent()?.join(data_dir.file_name()?)));
            cluster::survey_with_known(&shared, Some(m), &cleaned.filter(|d| d.is_dir()).unwrap_or(data_dir))?
        }
        None => cluster::survey(&shared, None)?,
    };
    if survey.nobody_answered() {
        let e = survey.unreachable();
        let hint = match shared.endpoints {
            Some(_) => "",
            None => "; give --endpoints with a live member's client URL",
        };
        return Err(coded(exit::code_of(&e), format!("{e:#}{hint}")));
    }
    let live = survey.status.clone();
    let generated = template.is_none();
    let template = match template {
        Some(t) => t,
        None => generated_manifest(&args, &shared, &live, &root)?,
    };
    let mut p = prepare(&args, &shared, &live, template)?;
    if generated {
        // kubeadm's defaults lack the cluster's etcd.local.extraArgs. The one that hurts at once:
        // a member started with the default 2 GiB quota on a bigger db raises NOSPACE, and the
        // whole cluster stops taking writes.
        let biggest = live.members.iter().map(|m| m.endpoint.db_size).max().unwrap_or(0);
        p.plan.check(
            "the db fits a generated manifest's default quota",
            biggest < DEFAULT_QUOTA_BYTES,
            format!(
                "largest member db {biggest} bytes, etcd's default --quota-backend-bytes {DEFAULT_QUOTA_BYTES}{}",
                if biggest < DEFAULT_QUOTA_BYTES {
                    ""
                } else {
                    ": give --template (another control-plane node's manifest, with its --quota-backend-bytes)"
                }
            ),
        );
    }
    if matches!(p.existing, Existing::None | Existing::Unstarted(_) | Existing::Written(_)) {
        // The new member receives the whole db from the leader: on a disk too small, the
        // transfer fails midway and the learner stays stuck, never in sync.
        let biggest = live.members.iter().map(|m| m.endpoint.db_size).max().unwrap_or(0);
        let (ok, detail) = common::backup::room(&p.data_dir, biggest.max(0) as u64 + WAL_ROOM);
        let detail = format!("{detail} (the largest member db, {biggest} bytes, and two WAL segments)");
        p.plan.check("room for the member's data", ok, detail);
    }
    if let Existing::Voter = p.existing {
        // Only if it works: a voter of this name that does not answer is the failed member the
        // runbook removes and cleans before a join.
        let voter = live.members.iter().find(|x| x.peer_urls.contains(&p.peer_url));
        if let Some(v) = voter.filter(|v| !v.endpoint.reachable) {
            let why = v.endpoint.error.clone().unwrap_or_default();
            if survey.tls_failed(&v.endpoint.url) {
                return Err(coded(
                    exit::REFUSED,
                    format!("{} could not be asked (TLS failed: {why}): check --cacert/--cert/--key", v.label()),
                ));
            }
            // One restarting (a loaded host, the kubelet's back-off) answers again soon: asked
            // for a while more before it is taken for the failed member the runbook removes.
            let wait = timeout.min(Duration::from_secs(30));
            let back = cluster::wait_member(&shared, &v.endpoint.url, wait).is_ok_and(|(id, _)| hex_id(id) == v.id);
            if !back {
                return Err(coded(
                    exit::REFUSED,
                    format!(
                        "{} is a voter with its manifest in place, but it does not answer ({why}; nor within \
                         {wait:?} more): remove it (etcd-member remove {}) and clean this node (etcd-member clean) \
                         first, then join",
                        v.label(),
                        p.name
                    ),
                ));
            }
        }
        // Its manifest keeps --force-new-cluster (a recover interrupted there): not done at all,
        // its next restart would drop every member added since.
        if Manifest::load(&shared.manifest).is_ok_and(|m| m.force_new_cluster()) {
            return Err(coded(
                exit::REFUSED,
                format!(
                    "{} is a started voter, but --force-new-cluster is still in {}: finish that recovery (etcd-quorum \
                     recover takes it out) before anything else",
                    p.name,
                    shared.manifest.display()
                ),
            ));
        }
        let detail = format!("{} is already a started voter with its manifest in place", p.name);
        if args.dry_run {
            return cli::nothing_to_do("etcd-member join", detail, shared.output);
        }
        common::say!("etcd-member: {detail}; nothing to do");
        lock.tidy();
        let change = MemberChange {
            kind: "MemberChange".into(),
            action: "join".into(),
            member: live.members.iter().find(|x| x.peer_urls.contains(&p.peer_url)).map(cluster::member_ref),
            changed: vec![],
            members: live.members.iter().map(cluster::member_ref).collect(),
            initial_cluster: None,
        };
        cli::emit(&change, shared.output, crate::remove::render);
        return Ok(exit::OK);
    }
    if let Some(code) = cli::plan_gate(&p.plan, shared.output, args.dry_run)? {
        return Ok(code);
    }
    cli::confirm(args.yes, &format!("join {} ({}) to the cluster", p.name, p.peer_url))?;
    lock.begin();

    let dialer = Dialer::new(&shared, true)?;
    let rt = common::client::runtime()?;
    let deadline = Instant::now() + timeout;
    let (mut client, _) = rt.block_on(cluster::connect_healthy(&dialer, &live, &[]))?;
    let mut manifest = p.manifest;
    let id = match p.existing {
        Existing::Unstarted(id) | Existing::Written(id) | Existing::StartedLearner(id) => id,
        Existing::None => rt.block_on(add_learner(&dialer, &mut client, &p.peer_url, deadline))?,
        Existing::Voter => unreachable!("handled above"),
    };
    common::failpoint::hit("join-learner-added");
    common::say!("etcd-member: learner {} ({}) in the member list", hex_id(id), p.peer_url);
    // Until the member starts, a failure leaves the learner in the cluster: say so, and how on.
    let learner_left = |e: anyhow::Error| {
        let hid = hex_id(id);
        exit::with_state(
            e,
            format!(
                "learner {hid} ({}) is in the member list: run join again to finish, or etcd-member remove {hid}",
                p.peer_url
            ),
        )
    };
    let members = rt.block_on(list(&dialer, &mut client)).map_err(learner_left)?;
    let ic = initial_cluster(&members, &hex_id(id), &p.name);
    if let Existing::Written(_) = p.existing {
        // Asked again now: the learner may have started since the plan (then its list is not
        // read any more, and a rewrite only restarts it).
        let refreshed = (|| {
            let mut m = Manifest::load(&shared.manifest)?;
            if !stale_initial_cluster(&m, &ic) {
                return anyhow::Ok(false);
            }
            m.set_flag("initial-cluster", &ic)?;
            m.set_annotation(JOINED_AT_ANNOTATION, &common::time::rfc3339_secs(common::time::now_secs()))?;
            m.set_annotation(JOINED_MEMBER_ANNOTATION, &hex_id(id))?;
            m.save()?;
            Ok(true)
        })();
        if refreshed.map_err(learner_left)? {
            common::say!("etcd-member: --initial-cluster in {} brought up to date: {ic}", shared.manifest.display());
        }
    }
    if matches!(p.existing, Existing::None | Existing::Unstarted(_)) {
        let written = (|| {
            manifest.set_flag("initial-cluster", &ic)?;
            manifest.set_flag("initial-cluster-state", "existing")?;
            // A template from a recovered node may still carry it: it must never start a joining member.
            manifest.remove_flag("force-new-cluster")?;
            // A manifest byte-identical to an earlier one is the same static pod to the kubelet,
            // crash-loop back-off included (up to 5 minutes after the member was removed): a new
            // one starts at once.
            manifest.set_annotation(JOINED_AT_ANNOTATION, &common::time::rfc3339_secs(common::time::now_secs()))?;
            manifest.set_annotation(JOINED_MEMBER_ANNOTATION, &hex_id(id))?;
            manifest.path = shared.manifest.clone();
            manifest.save()
        })();
        written.map_err(learner_left)?;
        common::say!("etcd-member: manifest written to {}", shared.manifest.display());
        common::failpoint::hit("join-manifest-written");
    }

    if let Err(e) = rt.block_on(promote(&dialer, &mut client, id, deadline)) {
        // Undo only a learner that never started: the learner out of the cluster, the manifest
        // out of the manifests dir; the data dir stays for inspection. A promotion whose answer
        // was lost may have gone through: a voter is never removed here. Nor is a learner that
        // started: it is catching up (a big db, a slow link), and a rerun promotes it once in sync.
        let me = match rt.block_on(list(&dialer, &mut client)) {
            Ok(ms) => ms.into_iter().find(|m| m.id == hex_id(id)),
            Err(l) => {
                return Err(exit::with_state(
                    e,
                    format!("the member list could not be read ({l:#}), so nothing was undone: run join again"),
                ));
            }
        };
        if me.as_ref().is_some_and(|m| !m.is_learner) {
            return Err(exit::with_state(e, format!("but {} is a voter now: run join again to verify it", hex_id(id))));
        }
        if let Some(m) = me.filter(|m| !m.name.is_empty()) {
            return Err(exit::with_state(
                e,
                format!(
                    "learner {} ({}) started and is catching up: kept, manifest in place; run join again to promote \
                     it once in sync (a big db takes a while: --timeout)",
                    m.name,
                    hex_id(id)
                ),
            ));
        }
        let removed = rt.block_on(dialer.call(client.member_remove(id)));
        let parked =
            common::backup::new_backup_dir(&root).and_then(|d| common::backup::move_aside(&shared.manifest, &d));
        let learner = match &removed {
            Ok(_) => format!("learner {} removed", hex_id(id)),
            Err(r) => format!("learner {} NOT removed ({r})", hex_id(id)),
        };
        let manifest_state = match &parked {
            Ok(to) => format!("manifest moved to {}", to.display()),
            Err(m) => format!("manifest NOT moved ({m:#})"),
        };
        return Err(exit::with_state(
            e,
            format!("{learner}; {manifest_state}; data dir {} left for inspection", p.data_dir.display()),
        ));
    }
    common::say!("etcd-member: {} promoted to voter", p.name);
    common::failpoint::hit("join-promoted");

    // Verify from the cluster's side: a started, reachable voter, a healthy cluster.
    loop {
        let s = cluster::survey(&shared, Some(&manifest))?.status;
        let me = s.members.iter().find(|x| x.id == hex_id(id));
        let ok = me.is_some_and(|x| x.started && !x.is_learner && x.endpoint.reachable) && s.quorum.has_quorum;
        if ok {
            let change = MemberChange {
                kind: "MemberChange".into(),
                action: "join".into(),
                member: me.map(cluster::member_ref),
                changed: me.map(cluster::member_ref).into_iter().collect(),
                members: s.members.iter().map(cluster::member_ref).collect(),
                initial_cluster: Some(ic),
            };
            cli::emit(&change, shared.output, crate::remove::render);
            return Ok(if cluster::is_degraded(&s) { exit::DEGRADED } else { exit::OK });
        }
        if Instant::now() >= deadline {
            return Err(coded(exit::TIMEOUT, format!("{} promoted but not reachable as a voter in time", p.name)));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm join's own manifest (existing, same name and peer URL) is not a join's of ours.
    #[test]
    fn only_a_manifest_a_join_wrote_is_taken_for_ours() {
        let text = include_str!("../../common/testdata/etcd.yaml.kubeadm-1.31").replace(
            "--initial-cluster=cp1=https://192.168.0.150:2380\n",
            "--initial-cluster=cp1=https://192.168.0.150:2380\n    - --initial-cluster-state=existing\n",
        );
        let path = std::path::Path::new("etcd.yaml");
        let mut m = Manifest::parse(path, &text).unwrap();
        let peer = Some("https://192.168.0.150:2380");
        assert!(!written_by_a_join(&m, "cp1", peer), "kubeadm's");
        m.set_annotation(JOINED_AT_ANNOTATION, "2026-11-24T20:00:00Z").unwrap();
        let ours = Manifest::parse(path, &m.to_yaml().unwrap()).unwrap();
        assert!(written_by_a_join(&ours, "cp1", peer));
        assert!(!written_by_a_join(&ours, "cp2", peer));
        assert!(!written_by_a_join(&ours, "cp1", Some("https://192.168.0.151:2380")));
    }

    #[test]
    fn rehost_moves_whole_hosts_only() {
        let new: IpAddr = "10.0.0.13".parse().unwrap();
        assert_eq!(
            rehost("https://10.0.0.1:2379,https://110.0.0.12:2379,https://127.0.0.1:2379", "10.0.0.1", &new),
            "https://10.0.0.13:2379,https://110.0.0.12:2379,https://127.0.0.1:2379"
        );
        assert_eq!(rehost("https://10.0.0.1:2390", "10.0.0.1", &new), "https://10.0.0.13:2390", "port kept");
        let v6: IpAddr = "fd00::13".parse().unwrap();
        assert_eq!(
            rehost("https://[fd00::1]:2380,https://[::1]:2380", "fd00::1", &v6),
            "https://[fd00::13]:2380,https://[::1]:2380"
        );
        assert_eq!(rehost("http://10.0.0.1:2381", "10.0.0.1", &v6), "http://[fd00::13]:2381");
    }
}
