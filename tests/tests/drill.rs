//! The rehearsal (README's first command) passes: every runbook procedure on a 3-node lab, with
//! the data written before each break read back after it.

fn drill(version: &str) {
    let out = std::process::Command::new(etcd_lab::bin("lab")).args(["--etcd-version", version]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in 1..=6 {
        assert!(text.contains(&format!("## step {step}: PASS")), "step {step}:\n{text}");
    }
    assert!(text.contains("# verified: 50 keys on every member"), "{text}");
}

#[test]
fn drill_3_4_23() {
    drill("3.4.23");
}

#[test]
fn drill_3_5_30() {
    drill("3.5.30");
}
