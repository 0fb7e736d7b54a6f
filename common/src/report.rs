//! The JSON documents the tools print and read (DESIGN.md), table rendering, hex member IDs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Member and cluster IDs as 16 lowercase hex digits: etcdctl's decimal uint64 loses precision in jq.
/// What `etcd-quorum inspect` says of a manifest that keeps `--force-new-cluster`, also in its
/// Error document when the data cannot be read: `pick` refuses on it.
pub const FORCE_FLAG_LEFT: &str = "--force-new-cluster is still in";

/// An ID or a time that is not known: "" in the code, null in the JSON (an empty string would
/// pass a jq ID comparison or break `fromdate`; null says nothing is known). Read back as "".
mod empty_is_null {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ptr_arg)] // serde's `with` hands the field as it is: &String
    pub fn serialize<S: Serializer>(v: &String, s: S) -> Result<S::Ok, S::Error> {
        match v.is_empty() {
            true => s.serialize_none(),
            false => s.serialize_some(v),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

pub fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

pub fn parse_hex_id(s: &str) -> Option<u64> {
    // Hex digits only: from_str_radix alone would take a leading '+'.
    let digits = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    digits.then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

/// Whether two member IDs are the same, however the documents spell them (padded or not).
pub fn same_id(a: &str, b: &str) -> bool {
    matches!((parse_hex_id(a), parse_hex_id(b)), (Some(x), Some(y)) if x == y)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub kind: String,
    /// When the picture was taken (RFC 3339): consumers refuse stale documents.
    pub taken_at: String,
    /// null when nothing says (no member answered, and no data dir here recorded it).
    #[serde(with = "empty_is_null")]
    pub cluster_id: String,
    /// The leader's member ID, null when no reachable member knows one.
    #[serde(with = "empty_is_null")]
    pub leader: String,
    pub members: Vec<MemberStatus>,
    pub alarms: Vec<AlarmStatus>,
    pub quorum: Quorum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalView>,
    /// Why the picture may be incomplete (member list from a fallback source, alarm list failed, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// id, name, peerURLs, clientURLs, isLearner: the same fields as in the change documents.
    #[serde(flatten)]
    pub member: MemberRef,
    /// An added member that never started has no name and no client URLs.
    pub started: bool,
    pub endpoint: EndpointStatus,
}

impl MemberStatus {
    /// How people see a member in messages: `name (id)`, or what is known of it.
    pub fn label(&self) -> String {
        match (self.name.is_empty(), self.id.is_empty()) {
            (false, false) => format!("{} ({})", self.name, self.id),
            (false, true) => self.name.clone(),
            (true, false) => self.id.clone(),
            (true, true) => self.endpoint.url.clone(),
        }
    }
}

/// Member fields read straight through (`m.name`), as they sit flat in the JSON.
impl std::ops::Deref for MemberStatus {
    type Target = MemberRef;
    fn deref(&self) -> &MemberRef {
        &self.member
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub url: String,
    pub reachable: bool,
    /// null when it answered: always present, as DESIGN.md lists it.
    #[serde(default)]
    pub error: Option<String>,
    pub version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub is_leader: bool,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStatus {
    pub member_id: String,
    pub alarm: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Quorum {
    pub voters: usize,
    pub reachable_voters: usize,
    pub needed: usize,
    pub has_quorum: bool,
    /// How many more voters may fail before quorum is lost (0 when it is lost already).
    pub fault_tolerance: usize,
}

impl Quorum {
    /// The quorum of a live cluster: `reachable` voters answer, `led` of them follow a leader. Only
    /// those make a working majority (members that answer while their peer traffic is cut have
    /// none); `reachableVoters` still says how many answer.
    pub fn of_cluster(voters: usize, reachable: usize, led: usize) -> Self {
        Quorum { reachable_voters: reachable, ..Quorum::compute(voters, led) }
    }

    pub fn compute(voters: usize, reachable_voters: usize) -> Self {
        let needed = voters / 2 + 1;
        let has_quorum = voters > 0 && reachable_voters >= needed;
        Quorum {
            voters,
            reachable_voters,
            needed,
            has_quorum,
            fault_tolerance: if has_quorum { reachable_voters - needed } else { 0 },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalView {
    pub manifest: String,
    /// `None` when crictl is missing or failed (see `warnings`) or no etcd container exists.
    pub container: Option<ContainerView>,
    /// The container's log tail, when etcd is not running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    pub manifest_flags: BTreeMap<String, String>,
    pub force_new_cluster: bool,
    pub certificates: Vec<CertificateView>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub id: String,
    pub state: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    pub path: String,
    /// What names it: a manifest flag, or "client" for the certificate this tool used.
    pub used_as: String,
    /// Always present, null when the file cannot be read (`error` says why): DESIGN.md lists them.
    #[serde(default)]
    pub not_after: Option<String>,
    #[serde(default)]
    pub days_left: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A member as the change documents show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberRef {
    /// null for a member known only from a manifest's --initial-cluster (no member answered).
    #[serde(with = "empty_is_null")]
    pub id: String,
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// etcd-member add/remove/promote/join.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberChange {
    pub kind: String,
    pub action: String,
    /// The member changed (the first one when a removal took several; all are in `changed`).
    pub member: Option<MemberRef>,
    pub changed: Vec<MemberRef>,
    /// The member list after the change.
    pub members: Vec<MemberRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
}

/// etcd-member clean.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClean {
    pub kind: String,
    pub manifest_backup: Option<String>,
    pub data_dir_backup: Option<String>,
    pub container_removed: Vec<String>,
    /// Where the removed containers' logs were saved first (in the backup dir).
    #[serde(default)]
    pub container_logs: Vec<String>,
}

/// etcd-snap save/verify: one snapshot file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub kind: String,
    pub path: String,
    /// File bytes (db plus the 32-byte trailer).
    pub size: u64,
    /// SHA-256 of the db part, hex, as in the trailer.
    pub sha256: String,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
    /// etcdutl's `snapshot status` hash (CRC-32C).
    pub hash: u32,
    /// Where and when it was taken: null for a file verified without its save's document.
    #[serde(default, with = "empty_is_null")]
    pub endpoint: String,
    #[serde(default, with = "empty_is_null")]
    pub member_id: String,
    #[serde(default, with = "empty_is_null")]
    pub etcd_version: String,
    #[serde(default, with = "empty_is_null")]
    pub taken_at: String,
    pub verified: bool,
}

/// A snapshot in a backup dir, known from its name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotEntry {
    pub path: String,
    pub size: u64,
    pub taken_at: String,
    pub member: String,
    pub revision: i64,
}

/// etcd-snap list/prune.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotList {
    pub kind: String,
    pub snapshots: Vec<SnapshotEntry>,
    pub removed: Vec<String>,
}

/// etcd-restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    pub kind: String,
    pub snapshot: String,
    pub data_dir: String,
    pub name: String,
    pub member_id: String,
    pub cluster_id: String,
    pub initial_cluster: String,
    pub revision: i64,
    pub bumped_revision: Option<i64>,
    pub swapped_in: bool,
    pub backups: Vec<String>,
}

/// A member as a data dir knows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiskMember {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(default)]
    pub is_learner: bool,
}

/// etcd-quorum inspect: a member's data dir, read offline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataDirInspection {
    pub kind: String,
    pub data_dir: String,
    pub name: String,
    pub member_id: String,
    pub cluster_id: String,
    /// Last HardState: term, vote, commit.
    pub term: u64,
    /// null when it voted for no one.
    #[serde(default, with = "empty_is_null")]
    pub vote: String,
    pub commit_index: u64,
    /// The last WAL entry (raft's up-to-date rule compares these two).
    pub last_index: u64,
    #[serde(default)]
    pub last_term: u64,
    /// The db's consistent index: what is applied to the backend.
    pub applied_index: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub members: Vec<DiskMember>,
    #[serde(default)]
    pub wal_crc_ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_tail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_index: Option<u64>,
    /// The manifest still has --force-new-cluster.
    #[serde(default)]
    pub force_new_cluster: bool,
    /// An etcd held the db while it was read: the numbers are what it had written, behind what it
    /// serves (it writes its commit index and applied index lazily).
    #[serde(default)]
    pub etcd_running: bool,
    #[serde(default)]
    pub inspected_at: String,
    #[serde(default)]
    pub problems: Vec<String>,
}

/// etcd-quorum recover.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuorumRecovery {
    pub kind: String,
    pub survivor: String,
    pub steps: Vec<String>,
    pub members_to_rejoin: Vec<String>,
    pub manifest_restored: bool,
    #[serde(default)]
    pub backup: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub action: String,
    pub detail: String,
    pub destructive: bool,
}

/// What a changing command would do (`--dry-run`), and the checks it made first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub kind: String,
    pub tool: String,
    pub preconditions: Vec<Check>,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(tool: &str) -> Plan {
        Plan { kind: "Plan".into(), tool: tool.into(), preconditions: vec![], steps: vec![] }
    }

    pub fn check(&mut self, check: &str, ok: bool, detail: impl Into<String>) {
        self.preconditions.push(Check { check: check.into(), ok, detail: detail.into() });
    }

    pub fn step(&mut self, action: &str, detail: impl Into<String>, destructive: bool) {
        self.steps.push(Step { action: action.into(), detail: detail.into(), destructive });
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.preconditions.iter().filter(|c| !c.ok).collect()
    }

    pub fn render_table(&self) -> String {
        let mut out = format!(
            "plan of {}:
preconditions:
",
            self.tool
        );
        for c in &self.preconditions {
            out += &format!(
                "  [{}] {}: {}
",
                if c.ok { "ok" } else { "FAILED" },
                c.check,
                c.detail
            );
        }
        out += "steps:
";
        for (i, s) in self.steps.iter().enumerate() {
            out += &format!(
                "  {}. {}{}: {}
",
                i + 1,
                s.action,
                if s.destructive { " (destructive)" } else { "" },
                s.detail
            );
        }
        out
    }
}

/// With JSON output, a failed run prints this on stdout besides the line on stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDoc {
    pub kind: String,
    pub code: u8,
    pub message: String,
}

impl ErrorDoc {
    pub fn new(code: u8, message: String) -> Self {
        ErrorDoc { kind: "Error".into(), code, message }
    }
}

/// A document the tools read back from each other: its `kind` field names its type.
pub trait Document: serde::de::DeserializeOwned {
    const KIND: &'static str;
    fn kind(&self) -> &str;
}

macro_rules! documents {
    ($($t:ident),*) => {$(
        impl Document for $t {
            const KIND: &'static str = stringify!($t);
            fn kind(&self) -> &str {
                &self.kind
            }
        }
    )*};
}
documents!(ClusterStatus, Snapshot, DataDirInspection);

/// Every `T` in a text: one object, concatenated objects, or arrays of them (so `ssh a ...; ssh b ...`
/// output and `jq -s` output both work). Errors are usage errors (exit 2) naming `source`.
pub fn read_documents<T: Document>(text: &str, source: &str) -> anyhow::Result<Vec<T>> {
    read_all(text, source, false).map(|(docs, _)| docs)
}

/// [`read_documents`], where `Error` documents (a failed run of the tool that writes `T`, say one
/// node's inspect in a `for n ...; do ssh $n ...; done` loop) are returned apart, not refused.
pub fn read_documents_and_errors<T: Document>(text: &str, source: &str) -> anyhow::Result<(Vec<T>, Vec<ErrorDoc>)> {
    read_all(text, source, true)
}

fn read_all<T: Document>(text: &str, source: &str, errors: bool) -> anyhow::Result<(Vec<T>, Vec<ErrorDoc>)> {
    use crate::exit::{USAGE, coded};
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let v = v.map_err(|e| coded(USAGE, format!("{source}: not JSON: {e}")))?;
        let items = if let serde_json::Value::Array(a) = v { a } else { vec![v] };
        for item in items {
            // The kind first: "a Plan document" says more than a missing field would.
            match item.get("kind").and_then(|k| k.as_str()) {
                Some(k) if k == T::KIND => {}
                Some("Error") if errors => {
                    failed.push(
                        serde_json::from_value(item)
                            .map_err(|e| coded(USAGE, format!("{source}: not an Error document: {e}")))?,
                    );
                    continue;
                }
                Some(k) => return Err(coded(USAGE, format!("{source}: a {k} document, not {}", T::KIND))),
                None => return Err(coded(USAGE, format!("{source}: not a {} document (no kind)", T::KIND))),
            }
            let doc: T = serde_json::from_value(item)
                .map_err(|e| coded(USAGE, format!("{source}: not a {} document: {e}", T::KIND)))?;
            out.push(doc);
        }
    }
    Ok((out, failed))
}

/// Exactly one `T` in a text.
pub fn read_document<T: Document>(text: &str, source: &str) -> anyhow::Result<T> {
    let mut docs = read_documents::<T>(text, source)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(crate::exit::coded(
            crate::exit::USAGE,
            format!("{source}: {n} {} documents, expected exactly one", T::KIND),
        )),
    }
}

pub fn print_json<T: Serialize>(doc: &T) {
    // Serializing our own plain structs cannot fail.
    let text = serde_json::to_string_pretty(doc).expect("document serializes");
    // Ignored, like every print of a tool: see `say!`.
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// A bordered table like etcdctl's `-w table`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let line = |cells: Vec<&str>, center: bool| -> String {
        let mut out = String::new();
        for (w, cell) in widths.iter().zip(cells) {
            let pad = w - cell.chars().count();
            let (l, r) = if center { (pad / 2, pad - pad / 2) } else { (0, pad) };
            out += &format!("| {}{}{} ", " ".repeat(l), cell, " ".repeat(r));
        }
        out + "|\n"
    };
    let mut out = rule.clone();
    out += &line(headers.to_vec(), true);
    out += &rule;
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect(), false);
    }
    out + &rule
}

/// Sizes like etcdctl prints them: `20 kB`, `1.2 MB`.
pub fn human_bytes(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", units[i])
    } else {
        format!("{v:.0} {}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_round_trip() {
        assert_eq!(hex_id(0x8e9e05c52164694d), "8e9e05c52164694d");
        assert_eq!(hex_id(42), "000000000000002a");
        assert_eq!(parse_hex_id("8e9e05c52164694d"), Some(0x8e9e05c52164694d));
        assert_eq!(parse_hex_id("2a"), Some(42));
        assert_eq!(parse_hex_id("xyz"), None);
        assert_eq!(parse_hex_id("18e9e05c52164694d"), None);
        assert_eq!(parse_hex_id("+2a"), None);
        assert_eq!(parse_hex_id("-2a"), None);
    }

    #[test]
    fn quorum_math() {
        let q = Quorum::compute(3, 3);
        assert_eq!((q.needed, q.has_quorum, q.fault_tolerance), (2, true, 1));
        let q = Quorum::compute(3, 1);
        assert_eq!((q.needed, q.has_quorum, q.fault_tolerance), (2, false, 0));
        let q = Quorum::compute(4, 3);
        assert_eq!((q.needed, q.has_quorum, q.fault_tolerance), (3, true, 0));
        assert!(!Quorum::compute(0, 0).has_quorum);
    }

    #[test]
    fn table_aligns() {
        let t = table(&["ID", "NAME"], &[vec!["abc".into(), "n1".into()]]);
        assert_eq!(t, "+-----+------+\n| ID  | NAME |\n+-----+------+\n| abc | n1   |\n+-----+------+\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
    }

    #[test]
    fn documents_are_read_by_kind() {
        let one = serde_json::to_string(&Snapshot { kind: "Snapshot".into(), ..Default::default() }).unwrap();
        assert_eq!(read_documents::<Snapshot>(&format!("[{one},{one}]\n{one}"), "f").unwrap().len(), 3);
        let bad = |text: &str| format!("{:#}", read_documents::<Snapshot>(text, "stdin").unwrap_err());
        assert!(bad(r#"{"kind":"Plan"}"#).contains("stdin: a Plan document, not Snapshot"));
        assert!(bad("{}").contains("stdin: not a Snapshot document (no kind)"));
        assert!(bad("{").contains("stdin: not JSON"));
        assert!(bad("[1]").contains("no kind"));
        let e = read_document::<Snapshot>(&format!("{one}{one}"), "f").unwrap_err();
        assert_eq!(crate::exit::code_of(&e), crate::exit::USAGE);
        assert!(format!("{e}").contains("f: 2 Snapshot documents, expected exactly one"));
        assert!(read_document::<Snapshot>("", "f").is_err());
    }

    #[test]
    fn unknown_ids_and_times_are_null_and_read_back_empty() {
        let doc = Snapshot { kind: "Snapshot".into(), member_id: String::new(), ..Default::default() };
        let v: serde_json::Value = serde_json::to_value(&doc).unwrap();
        for field in ["memberId", "takenAt", "endpoint", "etcdVersion"] {
            assert!(v[field].is_null(), "{field}: {v}");
        }
        let known = Snapshot { member_id: hex_id(7), ..doc.clone() };
        assert_eq!(serde_json::to_value(&known).unwrap()["memberId"], "0000000000000007");
        let back: Snapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
        // A document of an older build (empty strings) reads the same.
        let old = r#"{"kind":"Snapshot","path":"p","size":1,"sha256":"","revision":1,"totalKeys":1,"totalSize":1,"hash":1,"memberId":"","verified":true}"#;
        assert_eq!(serde_json::from_str::<Snapshot>(old).unwrap().member_id, "");
        let m: MemberRef =
            serde_json::from_str(r#"{"id":null,"name":"n","peerURLs":[],"clientURLs":[],"isLearner":false}"#).unwrap();
        assert_eq!(m.id, "");
        assert!(serde_json::to_value(&m).unwrap()["id"].is_null());
    }
}
