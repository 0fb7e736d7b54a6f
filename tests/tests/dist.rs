//! The release binaries in dist/ (./build-dist): static, small, and working with an empty
//! environment against an etcd endpoint given as an IP address (static glibc cannot resolve names
//! through NSS, so IPs are what these binaries are for).

use etcd_lab::{Cluster, Spec};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: [&str; 5] = ["etcd-status", "etcd-member", "etcd-snap", "etcd-restore", "etcd-quorum"];

fn dist(tool: &str) -> PathBuf {
    let p = etcd_lab::workspace_root().join("dist").join(tool);
    assert!(p.is_file(), "{} is missing: run ./build-dist", p.display());
    p
}

/// Whether an ELF file asks for a program interpreter (PT_INTERP), i.e. is dynamically linked.
fn has_interpreter(path: &Path) -> bool {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(b[4], 2, "64-bit");
    let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| u32::from_le_bytes(b[phoff + i * phentsize..][..4].try_into().unwrap()) == 3)
}

#[test]
fn static_small_and_runs_with_an_empty_environment() {
    for t in TOOLS {
        let p = dist(t);
        assert!(!has_interpreter(&p), "{t} is dynamically linked");
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 4 << 20, "{t} is {size} bytes, over 4 MiB");
        let out = Command::new(&p).env_clear().arg("--help").output().unwrap();
        assert!(out.status.success(), "{t} --help: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes"), "{t}");
    }
    // Subcommands too: a script's author reads `etcd-member remove --help`, not the tool's.
    for (t, sub) in
        [("etcd-member", "remove"), ("etcd-snap", "save"), ("etcd-quorum", "recover"), ("etcd-restore", "plan")]
    {
        let out = Command::new(dist(t)).args([sub, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Exit codes: 0 ok, 1 error, 2 usage") && help.contains("7 timeout"), "{t} {sub}: {help}");
    }
    // The test binary itself is dynamic: the check can tell the difference.
    assert!(has_interpreter(&std::env::current_exe().unwrap()));
}

#[test]
fn static_binaries_talk_to_an_ip_endpoint() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    let n = c.node(1);
    let empty_root = c.base.join("empty-root");
    std::fs::create_dir_all(&empty_root).unwrap();
    let tls = [
        format!("--cacert={}", n.pki().join("ca.crt").display()),
        format!("--cert={}", n.pki().join("healthcheck-client.crt").display()),
        format!("--key={}", n.pki().join("healthcheck-client.key").display()),
    ];
    let out = Command::new(dist("etcd-status"))
        .env_clear()
        .args(["--endpoints", &n.client_url(), "-w", "json", "--rootfs", empty_root.to_str().unwrap()])
        .args(&tls)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["members"][0]["endpoint"]["reachable"], true);
    let snap = c.base.join("static.db");
    let out = Command::new(dist("etcd-snap"))
        .env_clear()
        .args(["save", "--out", snap.to_str().unwrap(), "--endpoints", &n.client_url(), "-w", "json"])
        .args(["--rootfs", empty_root.to_str().unwrap()])
        .args(&tls)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(snap.is_file());
}
