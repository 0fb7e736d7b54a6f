//! etcd-member: the runbook's "remove a faulty node" and "add a new node" procedures: remove failed
//! members, clean a failed node, join a node back.

mod add;
mod clean;
mod join;
mod remove;

use anyhow::Result;
use argh::FromArgs;
use common::cli::{HasShared, SharedFlags};

#[derive(FromArgs, Debug)]
/// Remove failed etcd members, clean a failed node, join a node back (kubeadm static pods).
#[argh(
    example = "Remove every unreachable member, as etcd-status sees them:\n  $ etcd-status -w json | etcd-member remove --unreachable --status - --yes",
    example = "On the failed node, move its manifest and data dir aside:\n  $ etcd-member clean --yes",
    example = "Then, on the same node, join it back (learner, manifest, promotion):\n  $ etcd-member join --yes",
    note = "Exit codes: 0 ok, 1 error, 2 usage, 4 quorum lost, 5 refused (a precondition failed, or --yes missing), \
7 timeout."
)]
pub struct Args {
    #[argh(subcommand)]
    pub cmd: Cmd,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Cmd {
    Remove(remove::RemoveArgs),
    Clean(clean::CleanArgs),
    Join(join::JoinArgs),
    Add(add::AddArgs),
    Promote(add::PromoteArgs),
}

impl HasShared for Args {
    fn shared_flags(&self) -> SharedFlags {
        match &self.cmd {
            Cmd::Remove(a) => a.shared_flags(),
            Cmd::Clean(a) => a.shared_flags(),
            Cmd::Join(a) => a.shared_flags(),
            Cmd::Add(a) => a.shared_flags(),
            Cmd::Promote(a) => a.shared_flags(),
        }
    }
}

/// The newest `<backup root>/<timestamp>/etcd.yaml`: what the last clean moved aside.
pub(crate) fn last_cleaned_manifest(root: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.into_iter().rev().map(|d| d.join("etcd.yaml")).find(|m| m.is_file())
}

pub fn run(args: Args) -> Result<u8> {
    match args.cmd {
        Cmd::Remove(a) => remove::run(a),
        Cmd::Clean(a) => clean::run(a),
        Cmd::Join(a) => join::run(a),
        Cmd::Add(a) => add::run_add(a),
        Cmd::Promote(a) => add::run_promote(a),
    }
}
