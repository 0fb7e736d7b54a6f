//! The library every etcd recovery tool shares; one module per concern (see DESIGN.md).

pub mod time;
