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
    /// The verified snapshot made: (file size, revision).
    pub made: Option<(u64, i64)>,
    /// The run failed: no snapshot, or its pruning failed.
    pub failed: bool,
    pub duration_secs: f64,
}

/// Updates the file: the last-success values change only when a snapshot was made; failures_total
/// counts up. Every series is there from the first run on, a node that never succeeded included
/// (its last success at 0): an alert on the age of the last success has something to fire on.
pub fn record(path: &Path, o: &Outcome) -> anyhow::Result<()> {
    // Runs without --lock may end together: one read-modify-write at a time (else a count is
    // lost, or two writers share the temp file). node_exporter reads only *.prom files.
    let name = path.file_name().map_or("metrics".into(), |n| n.to_string_lossy().into_owned());
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path.with_file_name(format!(".{name}.lock")))?;
    lock.lock()?;
    let mut m = read(path);
    if let Some((size, revision)) = o.made {
        m.insert("last_success_timestamp_seconds".into(), common::time::now_secs() as f64);
        m.insert("last_size_bytes".into(), size as f64);
        m.insert("last_revision".into(), revision as f64);
    }
    if o.failed {
        *m.entry("failures_total".into()).or_insert(0.0) += 1.0;
    }
    m.insert("last_duration_seconds".into(), o.duration_secs);
    for name in ["failures_total", "last_success_timestamp_seconds", "last_size_bytes", "last_revision"] {
        m.entry(name.into()).or_insert(0.0);
    }
    let help = [
        ("last_success_timestamp_seconds", "gauge", "Unix time of the last verified snapshot."),
        ("last_size_bytes", "gauge", "Size of the last verified snapshot file."),
        ("last_revision", "gauge", "etcd revision of the last verified snapshot."),
        ("last_duration_seconds", "gauge", "How long the last run took, success or not."),
        ("failures_total", "counter", "Runs that failed: no verified snapshot, or its pruning failed."),
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
        // A node whose first run fails: the success series exist, at 0.
        record(&f, &Outcome { made: None, failed: true, duration_secs: 1.0 }).unwrap();
        let m = read(&f);
        assert_eq!(m["last_success_timestamp_seconds"], 0.0);
        assert_eq!(m["failures_total"], 1.0);
        record(&f, &Outcome { made: Some((20512, 9)), failed: false, duration_secs: 0.5 }).unwrap();
        assert!(read(&f)["last_success_timestamp_seconds"] > 0.0);
        record(&f, &Outcome { made: None, failed: true, duration_secs: 2.0 }).unwrap();
        // A snapshot made, its pruning failed: both show.
        record(&f, &Outcome { made: Some((20513, 10)), failed: true, duration_secs: 3.0 }).unwrap();
        let m = read(&f);
        assert_eq!(m["last_size_bytes"], 20513.0);
        assert_eq!(m["last_revision"], 10.0);
        assert_eq!(m["failures_total"], 3.0);
        assert_eq!(m["last_duration_seconds"], 3.0);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.contains("# TYPE etcd_snapshot_failures_total counter\netcd_snapshot_failures_total 3\n"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn runs_ending_together_lose_no_count() {
        let dir = std::env::temp_dir().join(format!("metrics-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("etcd_snapshot.prom");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        record(&f, &Outcome { made: None, failed: true, duration_secs: 1.0 }).unwrap();
                    }
                });
            }
        });
        assert_eq!(read(&f)["failures_total"], 100.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
