//! `remove <name|id>...` and `remove --unreachable [--status FILE|-]`, guarded by quorum math.

use anyhow::{Context, Result, anyhow};
use common::cli::{self, HasShared};
use common::cluster::{self, member_ref};
use common::exit::{self, coded};
use common::report::{self, ClusterStatus, MemberChange, MemberStatus, Plan, Quorum, parse_hex_id};
use std::io::Read;
use std::time::Duration;

common::with_shared_flags! {
    changing
    /// remove members by name or hex ID, or every unreachable one
    #[argh(
        subcommand,
        name = "remove",
        example = "The failed member, by name:\n  $ etcd-member remove cp3 --dry-run\n  $ etcd-member remove cp3 --yes",
        example = "Every unreachable member, as etcd-status sees them:\n  $ etcd-status -w json | etcd-member remove --unreachable --status - --yes"
    )]
    pub struct RemoveArgs {
        /// member names or hex IDs to remove
        #[argh(positional)]
        pub members: Vec<String>,
        /// remove every unreachable voter, and learner that has started
        #[argh(switch)]
        pub unreachable: bool,
        /// with --unreachable: a ClusterStatus document (etcd-status -w json), "-" for stdin
        #[argh(option)]
        pub status: Option<String>,
        /// oldest --status document accepted (default 5m)
        #[argh(option, default = "String::from(\"5m\")")]
        pub max_age: String,
        /// remove even when a guard says no (the member answers, quorum would be at risk)
        #[argh(switch)]
        pub force: bool,
    }
}

/// Reads and checks a `ClusterStatus` document: its kind and its age.
fn read_status_doc(source: &str, max_age: Duration) -> Result<ClusterStatus> {
    let source = if cli::is_stdin(source) { "-" } else { source };
    let text = if source == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("--status -: reading stdin")?;
        s
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| coded(exit::USAGE, format!("--status {source}: cannot read: {e}")))?
    };
    let doc: ClusterStatus = report::read_document(&text, &format!("--status {source}"))?;
    let taken = common::time::parse_rfc3339(&doc.taken_at)
        .ok_or_else(|| coded(exit::USAGE, format!("--status {source}: bad takenAt {:?}", doc.taken_at)))?;
    let age = common::time::now_secs() - taken;
    if age > max_age.as_secs() as i64 {
        return Err(coded(
            exit::REFUSED,
            format!("--status {source}: taken {age}s ago, older than --max-age {max_age:?}; run etcd-status again"),
        ));
    }
    Ok(doc)
}

/// The members to remove, from the live picture.
fn targets<'a>(
    args: &RemoveArgs,
    live: &'a ClusterStatus,
    doc: Option<&ClusterStatus>,
) -> Result<Vec<&'a MemberStatus>> {
    if args.unreachable {
        let source = doc.unwrap_or(live);
        let ids: Vec<&str> = source
            .members
            .iter()
            .filter(|m| !m.endpoint.reachable && !m.id.is_empty())
            .map(|m| m.id.as_str())
            .collect();
        // A member the document names but the cluster no longer has was removed already.
        return Ok(live.members.iter().filter(|m| ids.contains(&m.id.as_str()) && !join_under_way(m)).collect());
    }
    let mut found: Vec<&MemberStatus> = Vec::new();
    for name in &args.members {
        let m = find_member(live, name)?;
        // Named twice (or by name and by ID): removed once, counted once in the quorum math.
        if !found.iter().any(|f| f.id == m.id) {
            found.push(m);
        }
    }
    Ok(found)
}

/// A learner that has never started: what a join on another node has just added, before its
/// etcd comes up. It costs the quorum nothing, so `--unreachable` leaves it (removing it would
/// make that join undo itself); a stale one goes by its ID.
fn join_under_way(m: &MemberStatus) -> bool {
    m.is_learner && m.name.is_empty()
}

/// What `--unreachable` leaves, as (check, detail).
fn left_alone(live: &ClusterStatus) -> Vec<(String, String)> {
    let pending = live.members.iter().filter(|m| join_under_way(m));
    pending
        .map(|m| {
            let detail = format!(
                "not started yet (peer {}): a join may be under way; a stale one goes with `remove {}`",
                m.peer_urls.join(","),
                m.id
            );
            (format!("learner {} left alone", m.id), detail)
        })
        .collect()
}

/// A member by name, else by hex ID; an unknown one is a usage error listing the members.
pub(crate) fn find_member<'a>(live: &'a ClusterStatus, name: &str) -> Result<&'a MemberStatus> {
    // etcd allows one name twice (a node rebuilt under its hostname before the old member went):
    // which one is meant only its ID says.
    let named: Vec<String> = live.members.iter().filter(|m| m.name == name).map(MemberStatus::label).collect();
    if named.len() > 1 {
        let msg =
            format!("{} members are named {name:?}: {}; give the ID of the one meant", named.len(), named.join(", "));
        return Err(coded(exit::USAGE, msg));
    }
    let found =
        live.members.iter().find(|m| m.name == name).or_else(|| {
            parse_hex_id(name).and_then(|id| live.members.iter().find(|m| parse_hex_id(&m.id) == Some(id)))
        });
    found.ok_or_else(|| {
        let known: Vec<String> = live.members.iter().map(MemberStatus::label).collect();
        coded(exit::USAGE, format!("unknown member {name:?}; members: {}", known.join(", ")))
    })
}

/// The guards, as plan preconditions.
fn plan(args: &RemoveArgs, survey: &cluster::Survey, doc: Option<&ClusterStatus>, targets: &[&MemberStatus]) -> Plan {
    let live = &survey.status;
    let mut p = Plan::new("etcd-member remove");
    if let Some(d) = doc {
        p.check(
            "status document is of this cluster",
            d.cluster_id == live.cluster_id,
            format!("document cluster {}, live cluster {}", d.cluster_id, live.cluster_id),
        );
    }
    p.check(
        "cluster has quorum now",
        live.quorum.has_quorum,
        format!(
            "{} of {} voters reachable, {} needed",
            live.quorum.reachable_voters, live.quorum.voters, live.quorum.needed
        ),
    );
    let removed_voters = targets.iter().filter(|m| !m.is_learner).count();
    let removed_reachable = targets.iter().filter(|m| !m.is_learner && m.endpoint.reachable).count();
    let after = Quorum::compute(
        live.quorum.voters.saturating_sub(removed_voters),
        live.quorum.reachable_voters.saturating_sub(removed_reachable),
    );
    p.check(
        "quorum after the removal",
        after.has_quorum || args.force,
        format!("{} voters left, {} reachable, {} needed", after.voters, after.reachable_voters, after.needed),
    );
    p.check(
        "not the last member",
        targets.len() < live.members.len(),
        format!("{} of {} members", targets.len(), live.members.len()),
    );
    if args.unreachable {
        for (check, detail) in left_alone(live) {
            p.check(&check, true, detail);
        }
    }
    for m in targets {
        // Answering is alive, errors or not: a member cut off from its peers (it reports no
        // leader) or with an alarm comes back once that is fixed, unless it was removed.
        let answers = m.endpoint.reachable;
        let errors = match m.endpoint.errors.is_empty() {
            true => String::new(),
            false => format!(", reporting {}", m.endpoint.errors.join("; ")),
        };
        p.check(
            &format!("{} does not answer", m.label()),
            !answers || args.force,
            match answers {
                true => format!("it answers at its endpoint{errors} (use --force to remove it anyway)"),
                false => m.endpoint.error.clone().unwrap_or_default(),
            },
        );
        // The leader of the members that answer is alive, however its client URL looks from here
        // (a firewall, a wrong --advertise-client-urls): removing it ends a working member.
        if !answers && report::same_id(&live.leader, &m.id) {
            p.check(
                &format!("{} is not the leader", m.label()),
                args.force,
                "the members that answer follow it as their leader: it is alive, only its client URL does not \
                 answer from here (--force: remove it anyway)"
                    .to_string(),
            );
        }
        // Unreachable through a TLS failure says nothing about being down (a rotated CA, say).
        if let Some(url) = m.client_urls.iter().find(|u| survey.tls_failed(u)) {
            p.check(
                &format!("{} is not hidden by a TLS failure", m.label()),
                args.force,
                format!(
                    "TLS failed with {url}: it may be alive; check --cacert/--cert/--key (--force: remove it anyway)"
                ),
            );
        }
        p.step("member remove", format!("{} peer {}", m.label(), m.peer_urls.join(",")), true);
    }
    p
}

pub fn run(args: RemoveArgs) -> Result<u8> {
    let mut shared = args.shared_flags().resolve()?;
    if args.unreachable != args.members.is_empty() {
        return Err(coded(exit::USAGE, "give member names/IDs or --unreachable (not both)"));
    }
    if args.status.is_some() && !args.unreachable {
        return Err(coded(exit::USAGE, "--status goes with --unreachable"));
    }
    let max_age = cli::duration_flag("max-age", &args.max_age)?;
    let doc = args.status.as_deref().map(|s| read_status_doc(s, max_age)).transpose()?;
    let manifest = common::manifest::Manifest::load(&shared.manifest).ok();
    // Piped from etcd-status run elsewhere, on a host without a manifest: the document says where
    // the members are (else only the local default would be tried).
    if let (None, None, Some(d)) = (&shared.endpoints, &manifest, &doc) {
        let urls: Vec<String> = d.members.iter().flat_map(|m| m.client_urls.iter().cloned()).collect();
        if !urls.is_empty() {
            shared.endpoints = Some(urls);
        }
    }
    let survey = cluster::survey_of_node(&shared, manifest.as_ref())?;
    if survey.nobody_answered() {
        return Err(survey.unreachable());
    }
    let live = &survey.status;
    let targets = targets(&args, live, doc.as_ref())?;
    let plan = plan(&args, &survey, doc.as_ref(), &targets);
    if let Some(code) = cli::plan_gate(&plan, shared.output, args.dry_run)? {
        return Ok(code);
    }
    let mut change = MemberChange {
        kind: "MemberChange".into(),
        action: "remove".into(),
        member: None,
        changed: targets.iter().map(|m| member_ref(m)).collect(),
        members: live.members.iter().map(member_ref).collect(),
        initial_cluster: None,
    };
    if args.unreachable {
        for (check, detail) in left_alone(live) {
            common::say!("etcd-member: {check}: {detail}");
        }
    }
    if targets.is_empty() {
        common::say!("etcd-member: nothing to remove");
        cli::emit(&change, shared.output, render);
        return Ok(exit::OK);
    }
    let names: Vec<String> = targets.iter().map(|m| m.label()).collect();
    cli::confirm(args.yes, &format!("remove member(s) {}", names.join(", ")))?;

    let dialer = common::client::Dialer::new(&shared, true)?;
    let rt = common::client::runtime()?;
    let mut removed: Vec<String> = Vec::new();
    let members = rt.block_on(async {
        let ids: Vec<&str> = targets.iter().map(|m| m.id.as_str()).collect();
        let (mut client, via) = cluster::connect_healthy(&dialer, live, &ids).await?;
        for m in &targets {
            let id = parse_hex_id(&m.id).ok_or_else(|| anyhow!("bad member id {:?}", m.id))?;
            // etcd refuses member changes for ~5 s after a voter (re)connects: wait that out. A
            // change proposed while the leader changes (one removed just before) can be lost and
            // time out: it counts once the member is gone from the list, else it is proposed again.
            // Gone already (another operator, or our own proposal applied after all): that is the goal.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut already = false;
            loop {
                match dialer.call(client.member_remove(id)).await {
                    Ok(_) => break,
                    Err(e) if e.message.contains("member not found") => {
                        already = true;
                        break;
                    }
                    Err(e) if e.message.contains("unhealthy cluster") && std::time::Instant::now() < deadline => {
                        log::info!("member remove: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) if e.kind == common::client::FailKind::Timeout && std::time::Instant::now() < deadline => {
                        log::info!("member remove: {e}; checking the member list");
                        if crate::join::list(&dialer, &mut client).await.is_ok_and(|l| l.iter().all(|x| x.id != m.id)) {
                            break;
                        }
                    }
                    Err(e) => return Err(anyhow!("member remove {} through {via}: {e}", m.label())),
                }
            }
            match already {
                true => common::say!("etcd-member: {} was removed already", m.label()),
                false => common::say!("etcd-member: removed {}", m.label()),
            }
            removed.push(m.label());
            common::failpoint::hit("remove-member-removed");
        }
        // Removing the leader starts an election: the list may fail for a moment, so it is retried.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            match crate::join::list(&dialer, &mut client).await {
                Ok(members) => break anyhow::Ok(members),
                Err(e) if std::time::Instant::now() < deadline => {
                    log::info!("{e:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => break Err(anyhow!("{e:#} (through {via})")),
            }
        }
    });
    // A failure midway says which members are gone already.
    let members = members.map_err(|e| {
        let state =
            if removed.is_empty() { "no member removed".into() } else { format!("removed: {}", removed.join(", ")) };
        exit::with_state(e, state)
    })?;
    change.member = change.changed.first().cloned();
    change.members = members;
    cli::emit(&change, shared.output, render);
    Ok(exit::OK)
}

pub(crate) fn render(c: &MemberChange) -> String {
    let mut out = format!(
        "{}: {}\n",
        c.action,
        if c.changed.is_empty() {
            "nothing".to_string()
        } else {
            c.changed.iter().map(|m| format!("{} ({})", m.name, m.id)).collect::<Vec<_>>().join(", ")
        }
    );
    if let Some(ic) = &c.initial_cluster {
        out += &format!("initial cluster: {ic}\n");
    }
    let rows: Vec<Vec<String>> = c
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                if m.name.is_empty() { "unstarted".into() } else { "started".into() },
                m.name.clone(),
                m.peer_urls.join(","),
                m.client_urls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect();
    out + &report::table(&["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    fn member(name: &str, id: &str, errors: &[&str], reachable: bool) -> MemberStatus {
        MemberStatus {
            member: report::MemberRef {
                id: id.into(),
                name: name.into(),
                peer_urls: vec![format!("https://{name}:2380")],
                client_urls: vec![format!("https://{name}:2379")],
                is_learner: false,
            },
            started: true,
            endpoint: report::EndpointStatus {
                url: format!("https://{name}:2379"),
                reachable,
                errors: errors.iter().map(|e| e.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    /// A member that answers is alive, whatever it reports (cut off from its peers, an alarm):
    /// removing it needs --force. One that does not answer needs nothing more.
    #[test]
    fn a_member_that_answers_with_errors_is_still_alive() {
        for (errors, reachable, refused) in
            [(&["etcdserver: no leader"][..], true, true), (&[][..], true, true), (&[][..], false, false)]
        {
            let members = vec![
                member("n1", "a1", &[], true),
                member("n2", "a2", &[], true),
                member("n3", "a3", errors, reachable),
            ];
            let status = ClusterStatus {
                kind: "ClusterStatus".into(),
                taken_at: String::new(),
                cluster_id: "c".into(),
                leader: "a1".into(),
                quorum: Quorum::compute(3, 2 + usize::from(reachable)),
                members,
                alarms: vec![],
                local: None,
                warnings: vec![],
            };
            let survey = cluster::Survey { status, probes: vec![], explicit: true };
            for force in [false, true] {
                let mut argv = vec!["n3"];
                if force {
                    argv.push("--force");
                }
                let args = RemoveArgs::from_args(&["remove"], &argv).unwrap();
                let target = [&survey.status.members[2]];
                let p = plan(&args, &survey, None, &target);
                let failed: Vec<String> = p.failed().iter().map(|c| c.check.clone()).collect();
                let want: Vec<String> = if refused && !force { vec!["n3 (a3) does not answer".into()] } else { vec![] };
                assert_eq!(failed, want, "errors {errors:?}, reachable {reachable}, force {force}");
            }
        }
    }

    fn status(members: Vec<MemberStatus>, leader: &str, reachable: usize) -> ClusterStatus {
        ClusterStatus {
            kind: "ClusterStatus".into(),
            taken_at: String::new(),
            cluster_id: "c".into(),
            leader: leader.into(),
            quorum: Quorum::compute(members.len(), reachable),
            members,
            alarms: vec![],
            local: None,
            warnings: vec![],
        }
    }

    /// The leader of the members that answer is alive even when its own client URL does not
    /// answer from here: --unreachable needs --force to remove it.
    #[test]
    fn the_leader_is_not_taken_for_unreachable() {
        let members =
            vec![member("n1", "a1", &[], true), member("n2", "a2", &[], true), member("n3", "a3", &[], false)];
        let survey = cluster::Survey { status: status(members, "a3", 2), probes: vec![], explicit: true };
        let args = RemoveArgs::from_args(&["remove"], &["--unreachable"]).unwrap();
        let target = targets(&args, &survey.status, None).unwrap();
        assert_eq!(target.len(), 1);
        let p = plan(&args, &survey, None, &target);
        let failed: Vec<String> = p.failed().iter().map(|c| c.check.clone()).collect();
        assert_eq!(failed, ["n3 (a3) is not the leader"]);
        let forced = RemoveArgs::from_args(&["remove"], &["--unreachable", "--force"]).unwrap();
        assert!(plan(&forced, &survey, None, &target).failed().is_empty());
    }

    /// Two members of one name: which one is meant only its ID says.
    #[test]
    fn a_name_two_members_share_is_not_guessed() {
        let members =
            vec![member("n1", "a1", &[], true), member("n3", "a3", &[], false), member("n3", "b3", &[], true)];
        let live = status(members, "a1", 2);
        let e = find_member(&live, "n3").unwrap_err();
        assert_eq!(exit::code_of(&e), exit::USAGE);
        assert!(format!("{e:#}").contains("2 members are named \"n3\": n3 (a3), n3 (b3)"), "{e:#}");
        assert_eq!(find_member(&live, "b3").unwrap().id, "b3");
    }
}
