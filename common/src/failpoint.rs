//! Crash points for tests: `ETCD_RECOVERY_FAILPOINT=<name>` makes the process abort at that step,
//! as a `kill -9` would stop it there (no destructors, no cleanup), so tests can check that every
//! interrupted procedure leaves a state the next run recovers from.

pub const VAR: &str = "ETCD_RECOVERY_FAILPOINT";

pub fn hit(name: &str) {
    if std::env::var(VAR).is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
