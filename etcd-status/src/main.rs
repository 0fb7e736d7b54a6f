fn main() -> std::process::ExitCode {
    common::cli::main("etcd-status", etcd_status::run)
}
