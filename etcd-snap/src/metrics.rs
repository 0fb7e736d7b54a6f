//! The node_exporter textfile a cron run leaves behind, written atomically, on failure too.

use std::collections::BTreeMap;
use std::path::Path;

const PREFIX: &str = "etcd_snapshot_";

/// What the file says, by metric name without the prefix.
fn read(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// The outcome of one run.
pub struct Outcome {
    pub success: bool,
    pub size: u64,
    pub revision: i64,
    pub duration_secs: f64,
}

/// Updates the file: the last-success values change only on success; failures_total counts up.
pub fn record(path: &Path, o: &Outcome) -> anyhow::Result<()> {
    let mut m = read(path);
    if o.success {
        m.insert("last_success_timestamp_seconds".into(), common::time::now_secs() as f64);
        m.insert("last_size_bytes".into(), o.size as f64);
        m.insert("last_revision".into(), o.revision as f64);
    } else {
        *m.entry("failures_total".into()).or_insert(0.0) += 1.0;
    }
    m.insert("last_duration_seconds".into(), o.duration_secs);
    m.entry("failures_total".into()).or_insert(0.0);
    let help = [
        ("last_success_timestamp_seconds", "gauge", "Unix time of the last verified snapshot."),
        ("last_size_bytes", "gauge", "Size of the last verified snapshot file."),
        ("last_revision", "gauge", "etcd revision of the last verified snapshot."),
        ("last_duration_seconds", "gauge", "How long the last run took, success or not."),
        ("failures_total", "counter", "Runs that did not produce a verified snapshot."),
    ];
    let mut text = String::new();
    for (name, kind, doc) in help {
        if let Some(v) = m.get(name) {
            text += &format!("# HELP {PREFIX}{name} {doc}\n# TYPE {PREFIX}{name} {kind}\n{PREFIX}{name} {v}\n");
        }
    }
    // node_exporter runs as another user: the file is world-readable (it holds no secrets).
    common::manifest::write_atomic_mode(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_then_failure() {
        let dir = std::env::temp_dir().join(format!("metrics-test-{}", std::process::id()));
        // A failed run's file under a reused pid would carry its failure count into this one.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("etcd_snapshot.prom");
        record(&f, &Outcome { success: true, size: 20512, revision: 9, duration_secs: 0.5 }).unwrap();
        record(&f, &Outcome { success: false, size: 0, revision: 0, duration_secs: 2.0 }).unwrap();
        record(&f, &Outcome { success: false, size: 0, revision: 0, duration_secs: 3.0 }).unwrap();
        let m = read(&f);
        assert_eq!(m["last_size_bytes"], 20512.0);
        assert_eq!(m["last_revision"], 9.0);
        assert_eq!(m["failures_total"], 2.0);
        assert_eq!(m["last_duration_seconds"], 3.0);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.contains("# TYPE etcd_snapshot_failures_total counter\netcd_snapshot_failures_total 2\n"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
