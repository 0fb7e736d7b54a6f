//! `add` and `promote`: the cluster-side steps of a join alone, for operators who write the
//! manifest themselves.

use crate::join::{add_learner, initial_cluster, list, promote};
use crate::remove::find_member;
use anyhow::{Result, anyhow};
use common::cli::{self, HasShared, Shared};
use common::client::Dialer;
use common::cluster::{self, Survey};
use common::exit::{self, coded};
use common::report::{MemberChange, MemberStatus, Plan, hex_id, parse_hex_id};
use std::time::Instant;

common::with_shared_flags! {
    changing
    /// add a member as a learner and print the --initial-cluster its manifest needs
    #[argh(
        subcommand,
        name = "add",
        example = "By hand, the first half of a join:\n  $ etcd-member add cp3 https://10.0.0.13:2380 --yes"
    )]
    pub struct AddArgs {
        /// the new member's name
        #[argh(positional)]
        pub name: String,
        /// the new member's peer URL, e.g. https://10.0.0.13:2380
        #[argh(positional)]
        pub peer_url: String,
        /// how long to wait out etcd's "unhealthy cluster" check (default 30s)
        #[argh(option, default = "String::from(\"30s\")")]
        pub timeout: String,
    }
}

common::with_shared_flags! {
    changing
    /// promote a learner to voter once it is in sync with the leader
    #[argh(
        subcommand,
        name = "promote",
        example = "The learner, once in sync:\n  $ etcd-member promote cp3 --yes"
    )]
    pub struct PromoteArgs {
        /// the learner's name or hex ID
        #[argh(positional)]
        pub member: String,
        /// how long to wait for the learner to catch up (default 120s)
        #[argh(option, default = "String::from(\"120s\")")]
        pub timeout: String,
    }
}

fn live(shared: &Shared) -> Result<Survey> {
    let manifest = common::manifest::Manifest::load(&shared.manifest).ok();
    let survey = cluster::survey_of_node(shared, manifest.as_ref())?;
    if survey.nobody_answered() {
        return Err(survey.unreachable());
    }
    Ok(survey)
}

/// Plan, dry run, refusal, consent: the same gate for both commands.
fn gate(plan: &Plan, shared: &Shared, dry_run: bool, yes: bool, question: &str) -> Result<Option<u8>> {
    if let Some(code) = cli::plan_gate(plan, shared.output, dry_run)? {
        return Ok(Some(code));
    }
    cli::confirm(yes, question)?;
    Ok(None)
}

pub fn run_add(args: AddArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let timeout = cli::timeout_flag("timeout", &args.timeout)?;
    cli::check_url(&args.peer_url).map_err(|m| coded(exit::USAGE, format!("peer URL: {m}")))?;
    let survey = live(&shared)?;
    let s = &survey.status;
    let mut plan = Plan::new("etcd-member add");
    plan.check(
        "cluster has quorum",
        s.quorum.has_quorum,
        format!("{} of {} voters reachable", s.quorum.reachable_voters, s.quorum.voters),
    );
    let pending: Vec<String> =
        s.members.iter().filter(|m| m.is_learner || !m.started).map(MemberStatus::label).collect();
    plan.check("no learner pending", pending.is_empty(), pending.join(", "));
    let clash: Vec<String> = s
        .members
        .iter()
        .filter(|m| m.name == args.name || m.peer_urls.contains(&args.peer_url))
        .map(MemberStatus::label)
        .collect();
    plan.check("name and peer URL are new", clash.is_empty(), clash.join(", "));
    plan.step("member add --learner", format!("{} {}", args.name, args.peer_url), true);
    if let Some(code) =
        gate(&plan, &shared, args.dry_run, args.yes, &format!("add learner {} {}", args.name, args.peer_url))?
    {
        return Ok(code);
    }
    let dialer = Dialer::new(&shared, true)?;
    let rt = common::client::runtime()?;
    let deadline = Instant::now() + timeout;
    let (id, members) = rt.block_on(async {
        let (mut client, _) = cluster::connect_healthy(&dialer, s, &[]).await?;
        let id = add_learner(&dialer, &mut client, &args.peer_url, deadline).await?;
        anyhow::Ok((id, list(&dialer, &mut client).await?))
    })?;
    let hid = hex_id(id);
    let ic = initial_cluster(&members, &hid, &args.name);
    let me = members.iter().find(|m| m.id == hid).cloned();
    common::say!(
        "etcd-member: learner {hid} added; start it with --initial-cluster={ic} --initial-cluster-state=existing"
    );
    let change = MemberChange {
        kind: "MemberChange".into(),
        action: "add".into(),
        member: me.clone(),
        changed: me.into_iter().collect(),
        members,
        initial_cluster: Some(ic),
    };
    cli::emit(&change, shared.output, crate::remove::render);
    Ok(exit::OK)
}

pub fn run_promote(args: PromoteArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    let timeout = cli::timeout_flag("timeout", &args.timeout)?;
    let survey = live(&shared)?;
    let s = &survey.status;
    let target = find_member(s, &args.member)?;
    let id = parse_hex_id(&target.id).ok_or_else(|| anyhow!("bad member id {:?}", target.id))?;
    let mut plan = Plan::new("etcd-member promote");
    plan.check(
        "cluster has quorum",
        s.quorum.has_quorum,
        format!("{} of {} voters reachable", s.quorum.reachable_voters, s.quorum.voters),
    );
    plan.check(
        "member is a learner",
        target.is_learner,
        if target.is_learner { target.label() } else { format!("{} is a voter already", target.label()) },
    );
    plan.step("member promote", format!("{} once in sync with the leader", target.label()), true);
    if !target.is_learner && args.dry_run {
        return cli::nothing_to_do(
            "etcd-member promote",
            format!("{} is a voter already", target.label()),
            shared.output,
        );
    }
    if !target.is_learner {
        common::say!("etcd-member: {} is a voter already; nothing to do", target.label());
        let members = s.members.iter().map(cluster::member_ref).collect();
        let change = MemberChange {
            kind: "MemberChange".into(),
            action: "promote".into(),
            member: Some(cluster::member_ref(target)),
            changed: vec![],
            members,
            initial_cluster: None,
        };
        cli::emit(&change, shared.output, crate::remove::render);
        return Ok(exit::OK);
    }
    if let Some(code) = gate(&plan, &shared, args.dry_run, args.yes, &format!("promote {}", target.label()))? {
        return Ok(code);
    }
    let dialer = Dialer::new(&shared, true)?;
    let rt = common::client::runtime()?;
    let deadline = Instant::now() + timeout;
    let members = rt.block_on(async {
        let (mut client, _) = cluster::connect_healthy(&dialer, s, &[]).await?;
        promote(&dialer, &mut client, id, deadline).await?;
        list(&dialer, &mut client).await
    })?;
    let me = members.iter().find(|m| m.id == target.id).cloned();
    let change = MemberChange {
        kind: "MemberChange".into(),
        action: "promote".into(),
        member: me.clone(),
        changed: me.into_iter().collect(),
        members,
        initial_cluster: None,
    };
    cli::emit(&change, shared.output, crate::remove::render);
    Ok(exit::OK)
}
