//! etcd-member: the runbook's "remove a faulty node" and "add a new node" procedures: remove failed
//! members, clean a failed node, join a node back.

mod add;
mod clean;
mod join;
mod remove;

common::subcommands! {
    /// Remove failed etcd members, clean a failed node, join a node back (kubeadm static pods).
    #[argh(
        example = "Remove every unreachable member, as etcd-status sees them:\n  $ etcd-status -w json | etcd-member remove --unreachable --status - --yes",
        example = "On the failed node, move its manifest and data dir aside:\n  $ etcd-member clean --yes",
        example = "Then, on the same node, join it back (learner, manifest, promotion):\n  $ etcd-member join --yes",
        note = "Exit codes: 0 ok, 1 error, 2 usage, 3 degraded (joined, but the cluster reports a problem), 4 no \
             member answers (quorum lost? see etcd-quorum), 5 refused (a precondition failed: no quorum for the change, \
             it cannot be told whether this node's member is down, --yes missing...), 7 timeout."
    )]
    Remove(remove::RemoveArgs) => remove::run,
    Clean(clean::CleanArgs) => clean::run,
    Join(join::JoinArgs) => join::run,
    Add(add::AddArgs) => add::run_add,
    Promote(add::PromoteArgs) => add::run_promote,
}
