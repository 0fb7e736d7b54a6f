//! Writes the generated seeds of fuzz/corpus/ (the binary ones, and the JSON documents):
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Seeds taken as they are (kubeadm manifests, the real etcd snapshot, crictl output) are copied
//! by the same run from shared/reference and common/testdata. Files are overwritten, none is
//! deleted: inputs added by hand (`regression-*`) or picked from a long run (`found-*`) stay.

use common::disk::boltw::BoltWriter;
use common::disk::pb::Msg;
use common::disk::{forge, snapfile, snapshot, wal};
use common::manifest::{KubeadmEtcd, render_kubeadm};
use common::report::*;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    dir
}

fn put(target: &str, name: &str, data: &[u8]) {
    let path = corpus(target).join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("{:>7} {}", data.len(), path.display());
}

/// A kubeadm manifest: shared/reference/ (beside the repository) when it is there, else the copy in
/// common/testdata (which differs only in the image name).
fn reference(name: &str) -> Vec<u8> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference").join(name);
    std::fs::read(shared).unwrap_or_else(|_| testdata(name))
}

fn testdata(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/testdata").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An etcd-shaped bbolt file: the buckets etcd 3.5 has, a few revisions in `key`.
fn bolt(page_size: usize, keys: u64, trailer: bool) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("etcd-fuzz-seed-{}-{page_size}-{keys}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut w = BoltWriter::create(&path, page_size).expect("create");
    let rev = |main: u64| {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        k
    };
    let mut buckets = Vec::new();
    let mut bucket = |w: &mut BoltWriter, name: &str, entries: Vec<(Vec<u8>, Vec<u8>)>| {
        for (k, v) in entries {
            w.put(&k, &v).expect("put");
        }
        buckets.push((name.as_bytes().to_vec(), w.end_bucket().expect("end bucket")));
    };
    bucket(&mut w, "alarm", vec![]);
    bucket(&mut w, "auth", vec![(b"authRevision".to_vec(), 1u64.to_be_bytes().to_vec())]);
    bucket(&mut w, "cluster", vec![(b"clusterVersion".to_vec(), b"3.5.0".to_vec())]);
    let kvs = (2..2 + keys)
        .map(|r| {
            let kv = Msg::default()
                .bytes(1, format!("/registry/k{r}").as_bytes())
                .uint(2, r)
                .uint(3, r)
                .uint(4, 1)
                .bytes(5, b"v")
                .into_bytes();
            (rev(r), kv)
        })
        .collect();
    bucket(&mut w, "key", kvs);
    bucket(&mut w, "lease", vec![]);
    let members = [(0x8e9e05c52164694du64, "n1", "http://127.0.0.1:2380")];
    bucket(
        &mut w,
        "members",
        members
            .iter()
            .map(|(id, name, url)| {
                (format!("{id:x}").into_bytes(), snapfile::member_json(*id, name, &[url.to_string()]).into_bytes())
            })
            .collect(),
    );
    bucket(&mut w, "members_removed", vec![]);
    bucket(
        &mut w,
        "meta",
        vec![
            (b"consistent_index".to_vec(), (keys + 4).to_be_bytes().to_vec()),
            (b"finishedCompactRev".to_vec(), rev(1)),
            (b"term".to_vec(), 2u64.to_be_bytes().to_vec()),
        ],
    );
    w.finish(buckets).expect("finish");
    let mut bytes = std::fs::read(&path).expect("read back");
    if trailer {
        let mut f = std::fs::File::open(&path).expect("open");
        bytes.extend_from_slice(&snapshot::sha256_prefix(&mut f, bytes.len() as u64).expect("sha256"));
    }
    std::fs::remove_file(&path).expect("remove");
    bytes
}

fn cluster_status() -> ClusterStatus {
    let member = |id: &str, name: &str, ip: &str, leader: bool| MemberStatus {
        member: MemberRef {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://{ip}:2380")],
            client_urls: vec![format!("https://{ip}:2379")],
            is_learner: false,
        },
        started: true,
        endpoint: EndpointStatus {
            url: format!("https://{ip}:2379"),
            reachable: !name.ends_with('3'),
            error: name.ends_with('3').then(|| "context deadline exceeded".into()),
            version: "3.5.21".into(),
            db_size: 20480,
            db_size_in_use: 16384,
            is_leader: leader,
            raft_term: 4,
            raft_index: 1234,
            raft_applied_index: 1234,
            errors: vec![],
        },
    };
    ClusterStatus {
        kind: "ClusterStatus".into(),
        taken_at: "2025-01-02T03:04:05Z".into(),
        cluster_id: "cdf818194e3a8c32".into(),
        leader: "8e9e05c52164694d".into(),
        members: vec![
            member("8e9e05c52164694d", "cp1", "10.0.0.1", true),
            member("91bc3c398fb3c146", "cp2", "10.0.0.2", false),
            member("fd422379fda50e48", "cp3", "10.0.0.3", false),
        ],
        alarms: vec![AlarmStatus { member_id: "91bc3c398fb3c146".into(), alarm: "NOSPACE".into() }],
        quorum: Quorum::compute(3, 2),
        local: Some(LocalView {
            manifest: "/etc/kubernetes/manifests/etcd.yaml".into(),
            container: Some(ContainerView { id: "a3156c520b2d".into(), state: "CONTAINER_RUNNING".into(), attempt: 1 }),
            logs: vec![],
            manifest_flags: [("name".to_string(), "cp1".to_string())].into_iter().collect(),
            force_new_cluster: false,
            certificates: vec![CertificateView {
                path: "/etc/kubernetes/pki/etcd/server.crt".into(),
                used_as: "--cert-file".into(),
                not_after: Some("2026-01-02T03:04:05Z".into()),
                days_left: Some(364),
                error: None,
            }],
            warnings: vec![],
        }),
        warnings: vec!["alarm list failed on cp3".into()],
    }
}

fn snapshot_doc() -> Snapshot {
    Snapshot {
        kind: "Snapshot".into(),
        path: "/var/backups/etcd/cp1-20250102T030405Z-rev1234.db".into(),
        size: 73760,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        revision: 1234,
        total_keys: 1500,
        total_size: 73728,
        hash: 3_735_928_559,
        endpoint: "https://10.0.0.1:2379".into(),
        member_id: "8e9e05c52164694d".into(),
        etcd_version: "3.5.21".into(),
        taken_at: "2025-01-02T03:04:05Z".into(),
        verified: true,
    }
}

fn inspection() -> DataDirInspection {
    DataDirInspection {
        kind: "DataDirInspection".into(),
        data_dir: "/var/lib/etcd".into(),
        name: "cp1".into(),
        member_id: "8e9e05c52164694d".into(),
        cluster_id: "cdf818194e3a8c32".into(),
        term: 4,
        vote: "8e9e05c52164694d".into(),
        commit_index: 1234,
        last_index: 1236,
        last_term: 4,
        applied_index: 1234,
        revision: 1000,
        compact_revision: 900,
        members: vec![DiskMember {
            id: "8e9e05c52164694d".into(),
            name: "cp1".into(),
            peer_urls: vec!["https://10.0.0.1:2380".into()],
            is_learner: false,
        }],
        wal_crc_ok: true,
        torn_tail: Some("0000000000000000-0000000000000000.wal at 4096".into()),
        snapshot_index: Some(1000),
        force_new_cluster: false,
        etcd_running: false,
        inspected_at: "2025-01-02T03:04:05Z".into(),
        problems: vec![],
    }
}

fn main() {
    // bolt: etcd-shaped files in three page sizes (512 makes branch pages with few keys), one with
    // the snapshot trailer, and the real etcd 3.5.30 snapshot from common/testdata.
    put("bolt", "etcd-512-40keys.db", &bolt(512, 40, false));
    // Damaged by common::disk::forge as the tests damage real files (forge wants the root bucket in
    // one leaf page, which 512-byte pages are too small for).
    let small = bolt(1024, 40, false);
    put("bolt", "forged-cycle-1024.db", &forge::with_key_child(&small, None).expect("a key branch"));
    put("bolt", "forged-far-child-1024.db", &forge::with_key_child(&small, Some(999_999)).expect("a key branch"));
    put("bolt", "forged-keys-swapped-1024.db", &forge::with_keys_swapped(&small).expect("a key branch"));
    put("bolt", "etcd-1024-8keys-trailer.db", &bolt(1024, 8, true));
    put("bolt", "etcd-4096-3keys.db", &bolt(4096, 3, false));
    put("bolt", "empty-buckets-512.db", &{
        let path = std::env::temp_dir().join(format!("etcd-fuzz-seed-{}-empty.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        BoltWriter::create(&path, 512).expect("create").finish(vec![]).expect("finish");
        let b = std::fs::read(&path).expect("read");
        std::fs::remove_file(&path).expect("remove");
        b
    });
    put("bolt", "snapshot-3.5.30.db", &testdata("snapshot-3.5.30.db"));

    // wal: a restored member's first segment (3 members), behind zeros like a preallocated file;
    // a second segment continuing its chain; a torn one.
    let members: Vec<(u64, String)> = [(0x5606a5a8b25085bb, "n1"), (0xe04b22db4a72a6dd, "n2"), (0x067707bb2198ed90, "n3")]
        .iter()
        .enumerate()
        .map(|(i, (id, name))| (*id, snapfile::member_json(*id, name, &[format!("http://127.0.0.1:2538{i}")])))
        .collect();
    let wal_members: Vec<wal::WalMember> = members.iter().map(|(id, json)| wal::WalMember { id: *id, json }).collect();
    let first = wal::restore_segment(0x5606a5a8b25085bb, 0x4180329efa9c6f95, &wal_members, true);
    let mut padded = first.clone();
    padded.resize(first.len() + 256, 0);
    put("wal", "restore-segment.wal", &padded);
    put("wal", "restore-segment-no-confstate.wal", &wal::restore_segment(1, 2, &wal_members[..1], false));
    let prev = wal::read_segment(&first).crc;
    let mut next = wal::Writer::new(prev);
    next.record(wal::STATE, &Msg::default().uint(1, 2).uint(2, 1).uint(3, 5).into_bytes());
    let entry = Msg::default().uint(1, 2).uint(2, 4).uint(3, 0).bytes(4, b"put /a").into_bytes();
    next.record(wal::ENTRY, &entry);
    put("wal", "second-segment.wal", &next.buf);
    put("wal", "torn.wal", &first[..first.len() - 13]);

    // snap: .snap files as a restore writes them, and a small one with learners-free conf state.
    let v2 = snapfile::v2_store_json(
        &members.iter().enumerate().map(|(i, (id, _))| (*id, vec![format!("http://127.0.0.1:2538{i}")])).collect::<Vec<_>>(),
    );
    let voters: Vec<u64> = members.iter().map(|(id, _)| *id).collect();
    put("snap", "restore.snap", &snapfile::snap_file(&v2, &voters, 3, 1));
    put("snap", "small.snap", &snapfile::snap_file("{}", &[7, 9], 12, 3));

    // manifest: kubeadm's manifests, and edits to make (`YAML \0 NAME \0 VALUE`).
    let m131 = reference("etcd.yaml.kubeadm-1.31");
    let m134 = reference("etcd.yaml.kubeadm-1.34");
    put("manifest", "kubeadm-1.31.yaml", &m131);
    put("manifest", "kubeadm-1.34-set-state.yaml", &[&m134[..], b"\0initial-cluster-state\0existing"].concat());
    let joined = render_kubeadm(&KubeadmEtcd {
        name: "cp2",
        host: "[fd00::2]",
        image: "registry.k8s.io/etcd:3.5.21-0",
        initial_cluster: "cp1=https://[fd00::1]:2380,cp2=https://[fd00::2]:2380",
        existing: true,
    });
    put("manifest", "rendered-joined-ipv6.yaml", format!("{joined}\0name\0cp9").as_bytes());
    put(
        "manifest",
        "args-and-bare-flags.yaml",
        b"spec:\n  containers:\n  - name: etcd\n    command: [etcd, --force-new-cluster, --name, cp1]\n    \
          args: [--data-dir=/var/lib/etcd, -snapshot-count, '10']\n\0force-new-cluster\0false",
    );

    // documents: one of each kind, an array of two, concatenated; --initial-cluster lists; crictl.
    let status = serde_json::to_string_pretty(&cluster_status()).expect("json");
    put("documents", "cluster-status.json", status.as_bytes());
    let snap = serde_json::to_string(&snapshot_doc()).expect("json");
    put("documents", "snapshots-array.json", format!("[{snap},{snap}]").as_bytes());
    let insp = serde_json::to_string(&inspection()).expect("json");
    put("documents", "inspections-concatenated.json", format!("{insp}\n{insp}\n").as_bytes());
    put("documents", "plan.json", br#"{"kind":"Plan","tool":"etcd-restore","preconditions":[],"steps":[]}"#);
    put(
        "documents",
        "initial-cluster.txt",
        b"n1=http://127.0.0.1:25380,n2=http://127.0.0.1:25381,n3=http://127.0.0.1:25382\0restoretok",
    );
    put("documents", "initial-cluster-two-urls.txt", b"m=http://127.0.0.2:25390, m=HTTP://127.0.0.1:25390 ");
    put("documents", "crictl-ps.json", &testdata("crictl-ps.json"));
}
