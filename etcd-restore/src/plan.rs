//! `plan`: the runbook's option 2, every node restored into one new cluster: each node's exact
//! `--swap` command, with one shared new token, as JSON and as shell.

use anyhow::Result;
use common::cli::{self, HasShared};
use common::disk::ids;
use common::exit::{self, coded};
use serde::Serialize;

common::with_shared_flags! {
    /// print the command that restores each node into one new cluster (run them on the nodes)
    #[argh(
        subcommand,
        name = "plan",
        example = "Each node's command for one new 3-member cluster:\n  $ etcd-restore plan --snapshot /var/backups/etcd/etcd-snapshot-20261123T203332Z-cp1-r304.db --initial-cluster cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380"
    )]
    pub struct PlanArgs {
        /// the snapshot file (copy it to the same path on every node), or - for a Snapshot
        /// document on stdin; verified here when it is here
        #[argh(option)]
        pub snapshot: String,
        /// every member of the new cluster: name=peerURL,...
        #[argh(option)]
        pub initial_cluster: String,
        /// cluster token (default: a new one, the same for every node)
        #[argh(option)]
        pub initial_cluster_token: Option<String>,
        /// raise the revision by N (with --mark-compacted) on every node
        #[argh(option)]
        pub bump_revision: Option<u64>,
        /// mark the revisions before the bump as compacted
        #[argh(switch)]
        pub mark_compacted: bool,
        /// accept a snapshot without a sha256 trailer (a copied member/snap/db) on every node
        #[argh(switch)]
        pub skip_hash_check: bool,
        /// clear the alarms (NOSPACE, CORRUPT) the snapshot carries, on every node
        #[argh(switch)]
        pub drop_alarms: bool,
        /// write the new members as meta/confState on every node (for etcd 3.6.0-3.6.4 and a
        /// snapshot from etcd 3.4)
        #[argh(switch)]
        pub write_confstate: bool,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeCommand {
    name: String,
    member_id: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    argv: Vec<String>,
    shell: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestorePlan {
    kind: &'static str,
    snapshot: String,
    initial_cluster: String,
    token: String,
    cluster_id: String,
    nodes: Vec<NodeCommand>,
}

pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=,./:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn run(args: PlanArgs) -> Result<u8> {
    let shared = args.shared_flags().resolve()?;
    cli::check_bump(args.bump_revision, args.mark_compacted)?;
    if args.initial_cluster_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(coded(exit::USAGE, "--initial-cluster-token: empty"));
    }
    // Every node runs its command in its own dir: the path goes out absolute. A snapshot that is
    // here is verified now, rather than found bad on every node at once.
    let here = cli::is_stdin(&args.snapshot) || std::path::Path::new(&args.snapshot).exists();
    // Its sha256 goes into every node's command: a node with another file under that path (its
    // own snapshot of the same name, say) would restore other data under the same member IDs.
    let mut sha256 = None;
    let snapshot = if here {
        let (path, v) = crate::checked_snapshot(&args.snapshot, args.skip_hash_check, None)?;
        common::say!("etcd-restore: {path}: verified, revision {}, {} keys", v.status.revision, v.status.total_keys);
        // Not with --skip-hash-check: the trailer's value then is only read, not checked, and the
        // nodes would check their file against it.
        sha256 = Some(v.sha256).filter(|s| !s.is_empty() && !args.skip_hash_check);
        path
    } else {
        common::say!(
            "etcd-restore: {}: not on this node, not verified here (each node verifies its copy)",
            args.snapshot
        );
        args.snapshot.clone()
    };
    let snapshot = std::path::absolute(&snapshot)
        .map_err(|e| coded(exit::USAGE, format!("--snapshot {snapshot}: {e}")))?
        .display()
        .to_string();
    let token = args.initial_cluster_token.clone().unwrap_or_else(crate::new_token);
    let members =
        ids::parse_initial_cluster(&args.initial_cluster, &token).map_err(|e| coded(exit::USAGE, format!("{e:#}")))?;
    let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    let nodes = members
        .iter()
        .map(|m| {
            let mut argv: Vec<String> = vec![
                "etcd-restore".into(),
                "--swap".into(),
                "--snapshot".into(),
                snapshot.clone(),
                "--name".into(),
                m.name.clone(),
                "--initial-cluster".into(),
                args.initial_cluster.clone(),
                "--initial-advertise-peer-urls".into(),
                m.peer_urls.join(","),
                "--initial-cluster-token".into(),
                token.clone(),
            ];
            if let Some(sha) = &sha256 {
                argv.extend(["--snapshot-sha256".into(), sha.clone()]);
            }
            if let Some(b) = args.bump_revision.filter(|b| *b > 0) {
                argv.extend(["--bump-revision".into(), b.to_string(), "--mark-compacted".into()]);
            }
            let switches = [
                ("--skip-hash-check", args.skip_hash_check),
                ("--drop-alarms", args.drop_alarms),
                ("--write-confstate", args.write_confstate),
            ];
            argv.extend(switches.iter().filter(|(_, on)| *on).map(|(flag, _)| flag.to_string()));
            argv.push("--yes".into());
            let shell = argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
            NodeCommand {
                name: m.name.clone(),
                member_id: common::report::hex_id(m.id),
                peer_urls: m.peer_urls.clone(),
                argv,
                shell,
            }
        })
        .collect();
    let plan = RestorePlan {
        kind: "RestorePlan",
        snapshot,
        initial_cluster: args.initial_cluster.clone(),
        token,
        cluster_id: common::report::hex_id(cluster_id),
        nodes,
    };
    cli::emit(&plan, shared.output, |p| {
        let mut out = format!(
            "# new cluster {} (token {}); copy {} to every node, then run these at the same time (each waits up to \
             --timeout, 120s, for the new cluster's quorum, then undoes its swap: one after another they cannot \
             succeed):\n",
            p.cluster_id, p.token, p.snapshot
        );
        for n in &p.nodes {
            out += &format!("# on {} ({}):\n{}\n", n.name, n.member_id, n.shell);
        }
        out
    });
    Ok(exit::OK)
}
