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
        note = "Exit codes: 0 ok (recover: also when the survivor already leads alone), 1 error, 2 usage, 5 refused \
(recover: a live majority or a member following a leader, a member that failed TLS, a corrupt WAL without --via-restore, \
another manifest defining the etcd pod, another procedure running, --yes missing; pick: documents of different \
clusters), 6 integrity (inspect: unreadable data, a corrupt WAL; pick: every inspect failed), 7 timeout (etcd did not \
stop, or the survivor did not answer after its restart)."
    )]
    Inspect(inspect::InspectArgs) => inspect::run,
    Pick(pick::PickArgs) => pick::run,
    Recover(recover::RecoverArgs) => recover::run,
}
