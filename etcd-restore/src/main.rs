fn main() -> std::process::ExitCode {
    common::cli::main("etcd-restore", etcd_restore::run)
}
