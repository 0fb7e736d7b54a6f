fn main() -> std::process::ExitCode {
    common::cli::main("etcd-quorum", etcd_quorum::run)
}
