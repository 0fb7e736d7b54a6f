//! etcd-quorum: after quorum loss, inspect the survivors' data dirs offline, pick the one with the
//! most data by raft's own rule, and recover it as a one-member cluster through the static manifest
//! (`--force-new-cluster`, always taken out again).

mod inspect;
mod pick;
mod recover;

common::subcommands! {
    /// Loss-of-quorum recovery for kubeadm etcd: inspect data dirs offline, pick the survivor, recover it.
    #[argh(
        example = "On every surviving node, then choose:\n  $ for n in cp1 cp2; do ssh $n etcd-quorum inspect; done | etcd-quorum pick",
        example = "On the chosen survivor:\n  $ etcd-quorum recover --dry-run\n  $ etcd-quorum recover --yes",
        note = "Exit codes: 0 ok, 1 error, 2 usage, 5 refused (a live majority, a member that failed TLS, documents of \
different clusters, --yes missing), 6 integrity (unreadable data, a corrupt WAL), 7 timeout (etcd did not stop, or the \
survivor did not answer after its restart)."
    )]
    Inspect(inspect::InspectArgs) => inspect::run,
    Pick(pick::PickArgs) => pick::run,
    Recover(recover::RecoverArgs) => recover::run,
}
