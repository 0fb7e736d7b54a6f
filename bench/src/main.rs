//! etcd-bench: our tools against the etcd tools they replace, on the same data in one run,
//! alternating A and B so that drift on the machine hits both; medians, ratios and each child's
//! peak RSS (from wait4). Writes BENCHMARKS.md at the workspace root.

use etcd_lab::{Cluster, Spec};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Wall time and peak RSS of one run of a command; it must succeed.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn measure(cmd: &mut Command, must_succeed: bool) -> (Duration, u64) {
    // Untimed: no run pays for the writeback of the one before (cp leaves its copy dirty, and the
    // next run's fsync would wait for it).
    let _ = Command::new("sync").status();
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps exactly this child, which std never waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    assert!(pid > 0 && libc::WIFEXITED(status), "{cmd:?} did not exit ({status})");
    assert!(!must_succeed || libc::WEXITSTATUS(status) == 0, "{cmd:?} failed ({status})");
    (took, usage.ru_maxrss as u64 * 1024)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One command's result: median time, peak RSS.
struct Measured {
    name: String,
    time: Duration,
    rss: u64,
}

/// Runs the commands round-robin `runs` times (rotating who goes first); medians of time,
/// maximum of RSS. The first command is ours.
fn compare(what: &str, runs: usize, cmds: &mut [(&str, &mut dyn FnMut() -> Command)]) -> (String, Vec<Measured>) {
    compare_exits(what, runs, true, cmds)
}

/// [`compare`], where the commands may also exit non-zero (reporting an unhealthy cluster).
fn compare_exits(
    what: &str,
    runs: usize,
    must_succeed: bool,
    cmds: &mut [(&str, &mut dyn FnMut() -> Command)],
) -> (String, Vec<Measured>) {
    let mut times: Vec<Vec<Duration>> = vec![vec![]; cmds.len()];
    let mut rss = vec![0u64; cmds.len()];
    for i in 0..runs {
        for k in 0..cmds.len() {
            let j = (i + k) % cmds.len();
            let (t, r) = measure(&mut (cmds[j].1)(), must_succeed);
            times[j].push(t);
            rss[j] = rss[j].max(r);
        }
        eprintln!("  {what}: run {} done", i + 1);
    }
    let out = cmds
        .iter()
        .zip(times)
        .zip(rss)
        .map(|(((name, _), t), r)| Measured { name: name.to_string(), time: median(t), rss: r })
        .collect();
    (what.to_string(), out)
}

const HASH_ALONE: &str = "openssl dgst -sha256 (the hash alone)";
const CP: &str = "cp (the floor)";
const CP_FSYNC: &str = "cp, then fsync of the copy";
const RESTORE_NO_HASH: &str = "etcd-restore --skip-hash-check (cp's work)";

/// The targets of issues 4 and 5, each with what this run measured: met or not, never edited.
type Group = (String, Vec<Measured>);

fn targets(md: &mut String, save: &Group, verify: &Group, restore: &Group) {
    let get = |g: &Group, name: &str| g.1.iter().find(|m| m.name == name).map(|m| (m.time.as_secs_f64(), m.rss));
    let ours = |g: &Group| (g.1[0].time.as_secs_f64(), g.1[0].rss);
    let yes = |b: bool| if b { "met" } else { "**not met**" };
    writeln!(md, "| target (issues 4 and 5) | measured | |\n|---|---|---|").unwrap();
    let mut row = |target: &str, measured: String, ok: bool| {
        writeln!(md, "| {target} | {measured} | {} |", yes(ok)).unwrap();
    };
    let (s, s_rss) = ours(save);
    if let Some((t, _)) = get(save, "etcdctl snapshot save") {
        row("save time ≤ etcdctl's", format!("{s:.2} s vs {t:.2} s ({:.2}×)", s / t), s <= t);
    }
    row("save peak RSS ≤ 16 MiB", mib(s_rss), s_rss <= 16 << 20);
    let (v, _) = ours(verify);
    if let Some((t, _)) = get(verify, "etcdutl snapshot status") {
        row("verify faster than etcdutl status", format!("{v:.2} s vs {t:.2} s"), v < t);
        if let Some((k, _)) = get(verify, "etcd-snap verify --skip-hash-check") {
            row("… the same work (`--skip-hash-check`)", format!("{k:.2} s vs {t:.2} s"), k < t);
        }
    }
    let (r, r_rss) = ours(restore);
    if let Some((t, _)) = get(restore, "etcdutl snapshot restore") {
        row("restore faster than etcdutl", format!("{r:.2} s vs {t:.2} s"), r < t);
    }
    if let Some((c, _)) = get(restore, CP) {
        row("restore ≤ 1.2× cp", format!("{:.2}× ({r:.2} s vs {c:.2} s)", r / c), r <= 1.2 * c);
    }
    if let Some((c, _)) = get(restore, CP_FSYNC) {
        row(
            "… against cp with the fsync a restore does",
            format!("{:.2}× ({r:.2} s vs {c:.2} s)", r / c),
            r <= 1.2 * c,
        );
    }
    if let (Some((k, _)), Some((c, _))) = (get(restore, RESTORE_NO_HASH), get(restore, CP_FSYNC)) {
        row(
            "… the same work (`--skip-hash-check`) against cp with the fsync",
            format!("{:.2}× ({k:.2} s vs {c:.2} s)", k / c),
            k <= 1.2 * c,
        );
    }
    row("restore peak RSS ≤ 64 MiB", mib(r_rss), r_rss <= 64 << 20);
    // The floor every hash-checking run sits on, set against the targets it is compared with.
    if let Some((h, _)) = get(verify, HASH_ALONE) {
        let mut above = Vec::new();
        if let Some((t, _)) = get(verify, "etcdutl snapshot status") {
            above.push(format!("etcdutl's status ({t:.2} s): {}", if h > t { "more" } else { "less" }));
        }
        if let Some((c, _)) = get(restore, CP) {
            above.push(format!("1.2× cp ({:.2} s): {}", 1.2 * c, if h > 1.2 * c { "more" } else { "less" }));
        }
        writeln!(
            md,
            "\nThe SHA-256 of the file alone (`openssl dgst -sha256`, SHA-NI) takes {h:.2} s here; a verify or restore \
             that checks the trailer cannot take less. Against {}.\n",
            above.join("; ")
        )
        .unwrap();
    } else {
        writeln!(md).unwrap();
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn main() {
    let mut size_mb = 1024usize;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mb" => size_mb = args.next().and_then(|v| v.parse().ok()).expect("--size-mb N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => panic!("usage: etcd-bench [--size-mb N] [--runs N]"),
        }
    }
    let version = "3.5.30";
    let mut spec = Spec::new(1, version);
    spec.extra_flags = vec!["--quota-backend-bytes=8589934592".into()];
    let c = Cluster::start(spec);
    eprintln!("loading {size_mb} MiB into etcd {version} ...");
    let value = c.base.join("value");
    std::fs::write(&value, vec![b'v'; 1 << 20]).unwrap();
    let load = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (c, value) = (&c, &value);
            s.spawn(move || {
                for i in (t..size_mb).step_by(4) {
                    let out = Command::new(etcd_lab::etcd_dir(version).join("etcdctl"))
                        .args(["--endpoints", &c.node(1).client_url()])
                        .arg(format!("--cacert={}", c.node(1).pki().join("ca.crt").display()))
                        .arg(format!("--cert={}", c.node(1).pki().join("healthcheck-client.crt").display()))
                        .arg(format!("--key={}", c.node(1).pki().join("healthcheck-client.key").display()))
                        .args(["put", &format!("/registry/bench/{i:06}")])
                        .stdin(std::fs::File::open(value).unwrap())
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            });
        }
    });
    eprintln!("loaded in {:?}", load.elapsed());
    let pki = c.node(1).pki();
    let tls = [
        format!("--cacert={}", pki.join("ca.crt").display()),
        format!("--cert={}", pki.join("healthcheck-client.crt").display()),
        format!("--key={}", pki.join("healthcheck-client.key").display()),
    ];
    let ep = c.node(1).client_url();
    let ours_file = c.base.join("ours.db");
    let theirs_file = c.base.join("theirs.db");
    let etcd = etcd_lab::etcd_dir(version);
    let mut ours_save = || {
        let _ = std::fs::remove_file(&ours_file);
        let mut cmd = c.tool("etcd-snap", 1);
        cmd.args(["save", "--out", ours_file.to_str().unwrap(), "--endpoints", &ep, "--from", &ep]).args(&tls);
        cmd
    };
    let mut their_save = || {
        let _ = std::fs::remove_file(&theirs_file);
        let mut cmd = Command::new(etcd.join("etcdctl"));
        cmd.args(["--endpoints", &ep]).args(&tls).args(["snapshot", "save", theirs_file.to_str().unwrap()]);
        cmd
    };
    let save = compare(
        "snapshot save",
        runs,
        &mut [("etcd-snap save", &mut ours_save), ("etcdctl snapshot save", &mut their_save)],
    );
    let db_size = std::fs::metadata(&ours_file).unwrap().len();
    let mut ours_verify = || {
        let mut cmd = Command::new(etcd_lab::bin("etcd-snap"));
        cmd.args(["verify", theirs_file.to_str().unwrap(), "-w", "json"]);
        cmd
    };
    let mut their_status = || {
        let mut cmd = Command::new(etcd.join("etcdutl"));
        cmd.args(["snapshot", "status", theirs_file.to_str().unwrap(), "-w", "json"]);
        cmd
    };
    let mut ours_structure = || {
        let mut cmd = Command::new(etcd_lab::bin("etcd-snap"));
        cmd.args(["verify", "--skip-hash-check", theirs_file.to_str().unwrap(), "-w", "json"]);
        cmd
    };
    // The hash alone, by OpenSSL (SHA-NI too): what any tool checking the trailer cannot go below.
    let mut hash_alone = || {
        let mut cmd = Command::new("openssl");
        cmd.args(["dgst", "-sha256", theirs_file.to_str().unwrap()]);
        cmd
    };
    let have_openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    let mut verify_cmds: Vec<(&str, &mut dyn FnMut() -> Command)> = vec![
        ("etcd-snap verify", &mut ours_verify),
        ("etcd-snap verify --skip-hash-check", &mut ours_structure),
        ("etcdutl snapshot status", &mut their_status),
    ];
    if have_openssl {
        verify_cmds.push((HASH_ALONE, &mut hash_alone));
    }
    let verify = compare("snapshot verify/status", runs, &mut verify_cmds);
    let restored = c.base.join("restored");
    let cluster = "n1=https://10.0.0.1:2380,n2=https://10.0.0.2:2380,n3=https://10.0.0.3:2380";
    let restore_flags = [
        "--name=n1".to_string(),
        format!("--initial-cluster={cluster}"),
        "--initial-advertise-peer-urls=https://10.0.0.1:2380".to_string(),
        "--initial-cluster-token=bench".to_string(),
    ];
    // Our restore with extra flags (the strategy, or the hash check off).
    let ours = |extra: &'static [&'static str]| {
        let (restored, file, flags) = (&restored, &theirs_file, &restore_flags);
        move || {
            let _ = std::fs::remove_dir_all(restored);
            let mut cmd = Command::new(etcd_lab::bin("etcd-restore"));
            cmd.args(extra)
                .args(["--snapshot", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()])
                .args(flags);
            cmd
        }
    };
    let (mut ours_restore, mut ours_patch, mut ours_nohash) =
        (ours(&[]), ours(&["--copy-patch"]), ours(&["--skip-hash-check"]));
    let mut their_restore = || {
        let _ = std::fs::remove_dir_all(&restored);
        let mut cmd = Command::new(etcd.join("etcdutl"));
        cmd.args(["snapshot", "restore", theirs_file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()])
            .args(&restore_flags);
        cmd
    };
    let copy = c.base.join("copy.db");
    let mut cp = || {
        let _ = std::fs::remove_file(&copy);
        let mut cmd = Command::new("cp");
        cmd.arg(&theirs_file).arg(&copy);
        cmd
    };
    // A restore fsyncs what it wrote (so does etcdutl); cp does not. `sync FILE` is an fsync of it.
    let mut cp_fsync = || {
        let _ = std::fs::remove_file(&copy);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"cp "$1" "$2" && sync "$2""#, "cp"]).arg(&theirs_file).arg(&copy);
        cmd
    };
    let restore = compare(
        "snapshot restore",
        runs,
        &mut [
            ("etcd-restore (compacting rewrite)", &mut ours_restore),
            ("etcd-restore --copy-patch", &mut ours_patch),
            (RESTORE_NO_HASH, &mut ours_nohash),
            ("etcdutl snapshot restore", &mut their_restore),
            (CP, &mut cp),
            (CP_FSYNC, &mut cp_fsync),
        ],
    );
    let _ = std::fs::remove_dir_all(&restored);
    let _ = std::fs::remove_file(&copy);

    // Offline inspection of the loaded member's data dir, etcd stopped (etcd has no such tool;
    // etcdutl's status of its db is the nearest, and it would wait forever for the running
    // server's bbolt lock).
    c.stop_node(1);
    let data = c.node(1).root.join("var/lib/etcd");
    let mut ours_inspect = || {
        let mut cmd = Command::new(etcd_lab::bin("etcd-quorum"));
        cmd.args(["inspect", "--data-dir", data.to_str().unwrap(), "-w", "json", "--manifest", "/nonexistent"]);
        cmd
    };
    let mut their_db_status = || {
        let mut cmd = Command::new(etcd.join("etcdutl"));
        cmd.args(["snapshot", "status", data.join("member/snap/db").to_str().unwrap(), "-w", "json"]);
        cmd
    };
    let inspect = compare(
        "inspect a 1 GiB data dir",
        runs,
        &mut [("etcd-quorum inspect", &mut ours_inspect), ("etcdutl snapshot status of its db", &mut their_db_status)],
    );

    // Status of 5 members with 2 frozen (SIGSTOP): every member asked in parallel.
    let five = Cluster::start(Spec::new(5, version));
    let frozen = [five.freeze(4), five.freeze(5)];
    let five_eps = five.endpoints();
    let five_tls = [
        format!("--cacert={}", five.node(1).pki().join("ca.crt").display()),
        format!("--cert={}", five.node(1).pki().join("healthcheck-client.crt").display()),
        format!("--key={}", five.node(1).pki().join("healthcheck-client.key").display()),
    ];
    let mut ours_status = || {
        let mut cmd = five.tool("etcd-status", 1);
        cmd.args(["--endpoints", &five_eps, "-w", "json"]).args(&five_tls);
        cmd
    };
    let first = five.node(1).client_url();
    let mut their_status_cluster = || {
        let mut cmd = Command::new(etcd.join("etcdctl"));
        cmd.args(["--endpoints", &first]).args(&five_tls).args(["endpoint", "status", "--cluster", "-w", "json"]);
        cmd
    };
    let status = compare_exits(
        "status, 5 members, 2 frozen",
        runs,
        false,
        &mut [("etcd-status", &mut ours_status), ("etcdctl endpoint status --cluster", &mut their_status_cluster)],
    );
    for pid in frozen {
        five.thaw(pid);
    }

    // Binary sizes: ours from dist/ (./build-dist), theirs from the Debian packages.
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let ours_sizes: Vec<(String, u64)> = ["etcd-status", "etcd-member", "etcd-snap", "etcd-restore", "etcd-quorum"]
        .iter()
        .map(|t| (t.to_string(), size(&etcd_lab::workspace_root().join("dist").join(t))))
        .collect();
    let theirs_sizes: Vec<(String, u64)> =
        ["etcdctl", "etcdutl"].iter().map(|t| (t.to_string(), size(&etcd.join(t)))).collect();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0)))
        .unwrap_or(0);
    let mut md = String::new();
    writeln!(md, "# Benchmarks\n").unwrap();
    writeln!(md, "Produced by `bench/run` (etcd-bench); do not edit by hand. Medians of {runs} alternated runs each; RSS is the peak of any run (wait4).\n").unwrap();
    writeln!(
        md,
        "- machine: {} CPUs, {cpu}, {:.1} GiB RAM",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem as f64 / (1 << 20) as f64
    )
    .unwrap();
    writeln!(md, "- etcd {version} (Debian package), release builds of this workspace").unwrap();
    writeln!(md, "- data: {size_mb} values of 1 MiB; snapshot file {} bytes\n", db_size).unwrap();
    writeln!(
        md,
        "The first row of each group is ours; the ratio compares it with each other row. `etcd-snap verify` checks \
         the SHA-256 trailer (etcdutl's status does not); with `--skip-hash-check` it does etcdutl's work.\n"
    )
    .unwrap();
    targets(&mut md, &save, &verify, &restore);
    writeln!(md, "| what | tool | median time | peak RSS | time ratio (ours / this) |").unwrap();
    writeln!(md, "|---|---|---|---|---|").unwrap();
    for (what, rows) in [&save, &verify, &restore, &inspect, &status] {
        let ours = rows[0].time.as_secs_f64();
        for r in rows {
            let ratio =
                if std::ptr::eq(r, &rows[0]) { "-".to_string() } else { format!("{:.2}", ours / r.time.as_secs_f64()) };
            writeln!(md, "| {what} | {} | {:.2} s | {} | {ratio} |", r.name, r.time.as_secs_f64(), mib(r.rss)).unwrap();
        }
    }
    writeln!(md, "\n| binary | size |\n|---|---|").unwrap();
    for (name, bytes) in ours_sizes.iter().chain(&theirs_sizes) {
        writeln!(md, "| {name} | {} |", mib(*bytes)).unwrap();
    }
    let total = |v: &[(String, u64)]| v.iter().map(|(_, b)| b).sum::<u64>();
    writeln!(md, "| all five tools | {} |", mib(total(&ours_sizes))).unwrap();
    writeln!(md, "| etcdctl + etcdutl | {} |", mib(total(&theirs_sizes))).unwrap();
    let out = etcd_lab::workspace_root().join("BENCHMARKS.md");
    std::fs::write(&out, &md).unwrap();
    print!("{md}");
    eprintln!("written to {}", out.display());
}
