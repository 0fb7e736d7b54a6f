//! The library every etcd recovery tool shares; one module per concern (see DESIGN.md).

/// A line on stderr that never panics, unlike `eprintln!`: a terminal or pipe gone (a dropped ssh
/// session, a `| tee` killed by Ctrl-C) must not abort a procedure halfway.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod backup;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod durable;
pub mod exit;
pub mod failpoint;
pub mod manifest;
pub mod nodelock;
pub mod pki;
pub mod report;
pub mod runtime;
pub mod time;
pub mod yaml_edit;
