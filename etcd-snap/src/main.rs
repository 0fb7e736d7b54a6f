fn main() -> std::process::ExitCode {
    common::cli::main_aliased("etcd-snap", etcd_snap::ALIASES, etcd_snap::run)
}
