fn main() -> std::process::ExitCode {
    common::cli::main("etcd-member", etcd_member::run)
}
