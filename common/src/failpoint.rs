//! Crash points for tests: `ETCD_RECOVERY_FAILPOINT=<name>` makes the process abort at that step,
//! as a `kill -9` would stop it there (no destructors, no cleanup), so tests can check that every
//! interrupted procedure leaves a state the next run recovers from.
//!
//! `<name>:pause` holds the process at that step instead, until the file named by
//! `ETCD_RECOVERY_FAILPOINT_GO` exists (5 minutes at most): a test changes the world at exactly that moment (freezes
//! the etcd the step has just started, say) and lets the procedure go on.

use std::path::Path;
use std::time::Duration;

pub const VAR: &str = "ETCD_RECOVERY_FAILPOINT";
pub const GO_VAR: &str = "ETCD_RECOVERY_FAILPOINT_GO";

pub fn hit(name: &str) {
    let Ok(v) = std::env::var(VAR) else { return };
    if v == name {
        crate::say!("failpoint {name}: aborting");
        std::process::abort();
    }
    if v.strip_suffix(":pause") == Some(name)
        && let Ok(go) = std::env::var(GO_VAR)
    {
        crate::say!("failpoint {name}: paused");
        // Bounded: a forgotten variable must not hang a tool for good.
        let until = std::time::Instant::now() + Duration::from_secs(300);
        while !Path::new(&go).exists() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
