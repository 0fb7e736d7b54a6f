//! etcd-quorum: after quorum loss, inspect the survivors' data dirs offline, pick the one with the
//! most data by raft's own rule, and recover it as a one-member cluster through the static manifest
//! (`--force-new-cluster`, always taken out again).

mod inspect;
mod pick;
mod recover;

use anyhow::Result;
use argh::FromArgs;
use common::cli::{HasShared, SharedFlags};

#[derive(FromArgs, Debug)]
/// Loss-of-quorum recovery for kubeadm etcd: inspect data dirs offline, pick the survivor, recover it.
#[argh(
    example = "On every surviving node, then choose:\n  $ for n in cp1 cp2; do ssh $n etcd-quorum inspect; done | etcd-quorum pick",
    example = "On the chosen survivor:\n  $ etcd-quorum recover --dry-run\n  $ etcd-quorum recover --yes",
    note = "Exit codes: 0 ok, 1 error, 2 usage, 5 refused (a live majority, documents of different clusters, --yes \
missing), 6 integrity (unreadable data), 7 timeout."
)]
pub struct Args {
    #[argh(subcommand)]
    pub cmd: Cmd,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Cmd {
    Inspect(inspect::InspectArgs),
    Pick(pick::PickArgs),
    Recover(recover::RecoverArgs),
}

impl HasShared for Args {
    fn shared_flags(&self) -> SharedFlags {
        match &self.cmd {
            Cmd::Inspect(a) => a.shared_flags(),
            Cmd::Pick(a) => a.shared_flags(),
            Cmd::Recover(a) => a.shared_flags(),
        }
    }
}

pub fn run(args: Args) -> Result<u8> {
    match args.cmd {
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Pick(a) => pick::run(a),
        Cmd::Recover(a) => recover::run(a),
    }
}
