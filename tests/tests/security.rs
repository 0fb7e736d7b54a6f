//! Security properties: modes that no umask can widen or break, no key material or snapshot
//! values in logs at any level, TLS verification that cannot be switched off, subprocesses that
//! never go through a shell, and no snapshots written into a world-writable dir without --force.

use etcd_lab::{Cluster, Run, Spec};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "s3cr3t-value-that-must-never-be-logged";

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Runs a command under the given umask.
fn with_umask(mut cmd: Command, umask: u32) -> Run {
    // SAFETY: umask(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    etcd_lab::run(cmd, None)
}

/// Every path under `p` (itself included).
fn tree(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            out.extend(tree(&e.unwrap().path()));
        }
    }
    out
}

/// Snapshots 0600 in 0700 dirs, restored data dirs and backups 0700 with 0600 files, under a
/// umask that would widen them (0) and one that would lock the tool out of its own dirs (0777).
#[test]
fn modes_hold_whatever_the_umask() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    c.etcdctl_ok(&["put", "/registry/secrets/s", SECRET]);
    for umask in [0o000, 0o777] {
        let base = c.base.join(format!("umask-{umask:o}"));
        let snaps = base.join("new/snapshots");
        let mut cmd = c.tool("etcd-snap", 1);
        cmd.args(["save", "--dir", snaps.to_str().unwrap(), "-w", "json"]);
        let r = with_umask(cmd, umask);
        assert_eq!(r.code, 0, "umask {umask:o}: {}", r.stderr);
        let file = PathBuf::from(r.json["path"].as_str().unwrap());
        assert_eq!(mode(&file), 0o600, "umask {umask:o}");
        assert_eq!(mode(&snaps), 0o700, "umask {umask:o}");
        assert_eq!(mode(snaps.parent().unwrap()), 0o700, "umask {umask:o}: a parent the tool made");

        // An offline restore: etcd wants its data dir 0700; every file 0600.
        let data = base.join("restored");
        let mut cmd = c.tool("etcd-restore", 1);
        cmd.args(["--snapshot", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--name", "n1"])
            .args(["--initial-cluster", "n1=https://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "https://127.0.0.1:2380", "-w", "json"]);
        let r = with_umask(cmd, umask);
        assert_eq!(r.code, 0, "umask {umask:o}: {}", r.stderr);
        for p in tree(&data) {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&p), want, "umask {umask:o}: {}", p.display());
        }

        // A node cleaned: its backup dir 0700, the data dir moved in keeps 0700.
        // (A node of its own: no manifest, no containers, a runtime that answers; no certificates
        // to ask whether the member its data records runs: --force.)
        let root = base.join("node");
        std::fs::create_dir_all(root.join("var/lib")).unwrap();
        std::fs::rename(&data, root.join("var/lib/etcd")).unwrap();
        std::fs::create_dir_all(etcd_lab::cri::state_dir_for_root(&root)).unwrap();
        let mut cmd = c.tool("etcd-member", 1);
        cmd.env("ETCD_ROOTFS", &root)
            .env("CONTAINER_RUNTIME_ENDPOINT", etcd_lab::cri::endpoint_for_root(&root))
            .args(["clean", "--yes", "--force", "-w", "json"]);
        let r = with_umask(cmd, umask);
        assert_eq!(r.code, 0, "umask {umask:o}: {}\n{}", r.stderr, r.stdout);
        let moved = PathBuf::from(r.json["dataDirBackup"].as_str().unwrap());
        assert_eq!(mode(&moved), 0o700, "umask {umask:o}");
        assert_eq!(mode(moved.parent().unwrap()), 0o700, "umask {umask:o}: the backup dir");
        assert_eq!(mode(&root.join("var/lib/etcd-recovery")), 0o700, "umask {umask:o}: the backup root");
    }
}

/// At RUST_LOG=trace, across the tools: neither snapshot values nor key material reach stderr.
#[test]
fn no_secrets_in_logs_at_trace() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    c.etcdctl_ok(&["put", "/registry/secrets/s", SECRET]);
    let node = c.node(1);
    let key_pem = std::fs::read_to_string(node.pki().join("healthcheck-client.key")).unwrap();
    let key_lines: Vec<&str> = key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).collect();
    assert!(!key_lines.is_empty());
    let snap = c.base.join("s.db");
    let data = c.base.join("restored");
    let snap_s = snap.to_str().unwrap();
    // Each run does its work (the snapshot and the restored dir exist for the next), so the
    // secret has been through every path that could log it.
    let runs: Vec<(&str, Vec<&str>, i32)> = vec![
        ("etcd-status", vec![], 0),
        ("etcd-snap", vec!["save", "--out", snap_s], 0),
        ("etcd-snap", vec!["verify", snap_s], 0),
        ("etcd-restore", vec!["--snapshot", snap_s, "--data-dir", data.to_str().unwrap(), "--name", "n1"], 0),
        ("etcd-quorum", vec!["inspect", "--data-dir", data.to_str().unwrap()], 0),
        // The plan of removing the last member: refused, with the member list read.
        ("etcd-member", vec!["remove", "node1", "--dry-run"], 5),
    ];
    // The value as a log could show it: as is, in hex (either case), as a list of bytes (Rust's
    // Debug of a byte slice or Vec), and as base64 at each of its three alignments.
    let bytes = SECRET.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let byte_list = bytes.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    let mut forms = vec![SECRET.to_string(), hex.clone(), hex.to_uppercase(), byte_list];
    assert_eq!(base64_core(b"foobar!"), "Zm9vYmFy", "the encoder itself");
    forms.extend((0..3).map(|skip| base64_core(&bytes[skip..])));
    let mut total = 0;
    for (tool, args, code) in runs {
        let mut cmd = c.tool(tool, 1);
        cmd.args(&args).args(["-w", "json"]).env("RUST_LOG", "trace");
        if tool == "etcd-restore" {
            cmd.args(["--initial-cluster", "n1=https://127.0.0.1:2380"])
                .args(["--initial-advertise-peer-urls", "https://127.0.0.1:2380"]);
        }
        let r = etcd_lab::run(cmd, None);
        let what = format!("{tool} {}", args.join(" "));
        assert_eq!(r.code, code, "{what}: {}", r.stderr);
        total += r.stderr.len();
        for (i, form) in forms.iter().enumerate() {
            assert!(!r.stderr.contains(form.as_str()), "{what}: a snapshot value in the log (form {i}: {form})");
            assert!(!r.stdout.contains(form.as_str()), "{what}: a snapshot value in the output (form {i}: {form})");
        }
        assert!(!r.stderr.contains("PRIVATE KEY"), "{what}: key material in the log");
        for l in &key_lines {
            assert!(!r.stderr.contains(l), "{what}: a line of the private key in the log");
        }
    }
    // The check means something only if trace logging was on.
    assert!(total > 10_000, "only {total} bytes of trace logs");
}

/// The base64 characters that encode `b` whatever precedes it, given that it starts on a 3-byte
/// boundary: every whole group, none of the padded end.
fn base64_core(b: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for g in b.chunks_exact(3) {
        let n = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
        out.extend((0..4).rev().map(|i| ABC[(n >> (6 * i) & 63) as usize] as char));
    }
    out
}

/// No flag or environment variable turns verification off: etcdctl's insecure switches are not
/// honoured (and not accepted as flags), a server the CA did not sign is refused, and a plaintext
/// URL is said to be one.
#[test]
fn tls_verification_cannot_be_switched_off() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    for tool in ["etcd-status", "etcd-member", "etcd-snap", "etcd-restore", "etcd-quorum"] {
        let out = Command::new(etcd_lab::bin(tool)).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(!help.contains("insecure") && !help.contains("skip-tls"), "{tool} --help offers to switch TLS off");
    }
    let r = c.run_json("etcd-status", 1, &["--insecure-skip-tls-verify"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--insecure-skip-tls-verify"), "{}", r.stderr);

    // A CA that did not sign the server, with every insecure variable etcdctl knows set.
    let other = etcd_lab::pki::Ca::new("other-ca");
    let ca = c.base.join("other-ca.crt");
    std::fs::write(&ca, &other.cert_pem).unwrap();
    let mut cmd = c.tool("etcd-status", 1);
    cmd.args(["--cacert", ca.to_str().unwrap(), "-w", "json"])
        .env("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true")
        .env("ETCDCTL_INSECURE_TRANSPORT", "true")
        .env("ETCDCTL_INSECURE_DISCOVERY", "true");
    let r = etcd_lab::run(cmd, None);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.to_lowercase().contains("certificate"), "{}", r.stderr);

    // Plaintext to a TLS member: refused by the member, and the tool says the URL is plaintext.
    let plain = c.node(1).client_url().replace("https://", "http://");
    let r = c.run_json("etcd-status", 1, &["--endpoints", &plain, "--dial-timeout", "1s"], None);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.stderr.matches(&format!("{plain} is plaintext")).count(), 1, "said once: {}", r.stderr);
}

/// Subprocesses (crictl, df) take an argv, never a shell: a shell would run what these values
/// smuggle in.
#[test]
fn subprocesses_never_go_through_a_shell() {
    let base = std::env::temp_dir().join(format!("argv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let pwned = base.join("pwned");
    let inject = format!("crictl; touch {}", pwned.display());
    let root = base.join(format!("root $(touch {})", pwned.display()));
    std::fs::create_dir_all(root.join("var/lib/etcd/member")).unwrap();
    std::fs::create_dir_all(root.join("etc/kubernetes/manifests")).unwrap();
    let reference = etcd_lab::workspace_root().join("common/testdata/etcd.yaml.kubeadm-1.31");
    std::fs::copy(reference, root.join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    for (tool, args) in [
        ("etcd-status", vec!["--crictl", &inject, "--endpoints", "http://127.0.0.1:1", "--dial-timeout", "1s"]),
        ("etcd-member", vec!["clean", "--dry-run", "--crictl", &inject, "--endpoints", "http://127.0.0.1:1"]),
    ] {
        let mut cmd = Command::new(etcd_lab::bin(tool));
        cmd.args(&args).args(["-w", "json"]).env("ETCD_ROOTFS", &root);
        let r = etcd_lab::run(cmd, None);
        assert!(!pwned.exists(), "{tool}: a shell ran the injected command ({})", r.stderr);
        // The program named was looked up as one file name, semicolon and all.
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(out.contains(&format!("{inject}: No such file or directory")), "{tool}: {out}");
    }
    // And in the source: no shell anywhere a tool runs a program.
    let root = etcd_lab::workspace_root();
    let mut sources = Vec::new();
    for dir in
        ["common/src", "etcd-status/src", "etcd-member/src", "etcd-snap/src", "etcd-restore/src", "etcd-quorum/src"]
    {
        sources.extend(tree(&root.join(dir)).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")));
    }
    assert!(sources.len() > 20);
    for p in sources {
        let text = std::fs::read_to_string(&p).unwrap();
        for shell in ["\"sh\"", "\"/bin/sh\"", "\"bash\"", "\"/bin/bash\"", "\"-c\""] {
            assert!(!text.contains(shell), "{}: {shell}", p.display());
        }
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// A world-writable snapshot dir (even with the sticky bit) is refused without --force, untouched.
#[test]
fn world_writable_snapshot_dir_needs_force() {
    let c = Cluster::start(Spec::new(1, "3.5.30"));
    for m in [0o777, 0o1777] {
        let dir = c.base.join(format!("shared-{m:o}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
        let r = c.run_json("etcd-snap", 1, &["save", "--dir", dir.to_str().unwrap()], None);
        assert_eq!(r.code, 5, "{}", r.stderr);
        assert!(r.stderr.contains(&format!("{}: world-writable", dir.display())), "{}", r.stderr);
        assert!(r.stderr.contains("--force"), "{}", r.stderr);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
        let r = c.run_json("etcd-snap", 1, &["save", "--dir", dir.to_str().unwrap(), "--force"], None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(mode(Path::new(r.json["path"].as_str().unwrap())), 0o600);
        assert_eq!(mode(&dir), m, "an existing dir's mode is the owner's choice");
    }
}
