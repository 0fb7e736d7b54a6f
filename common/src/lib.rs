//! The library every etcd recovery tool shares; one module per concern (see DESIGN.md).

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
