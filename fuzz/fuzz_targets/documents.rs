//! The text the tools read from each other and from people: JSON documents on stdin (one object,
//! concatenated objects, or arrays), `--initial-cluster` lists, peer URLs, hex member IDs.
//!
//! Every input goes to all readers. For `--initial-cluster`, an input with a `\0` is
//! `LIST \0 TOKEN`, else the token is etcd's default.
//!
//! crictl's `ps -o json` output goes to `runtime::parse_ps` too.
//!
//! Invariants checked besides "no panic, no hang, no unbounded allocation":
//! - documents read are of the asked kind, and read back the same after being written out as JSON;
//!   `read_document` succeeds exactly when there is one; errors are usage errors naming the source;
//! - a normalized URL normalizes to itself;
//! - an accepted `--initial-cluster` has members with non-zero, distinct IDs computed from their
//!   sorted, normalized peer URLs and the token, and written back as a list it reads the same;
//! - `parse_hex_id` and `hex_id` round-trip;
//! - `parse_ps` lists containers newest first, running exactly when their state says so.
#![no_main]

use common::disk::ids::{self, InitialMember};
use common::exit::{USAGE, code_of};
use common::report::{self, ClusterStatus, DataDirInspection, Document, Snapshot};
use common::runtime;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use std::fmt::Debug;

const SOURCE: &str = "fuzz-input";

fn usage_error(e: &anyhow::Error) {
    assert_eq!(code_of(e), USAGE, "{e:#}");
    let msg = format!("{e:#}");
    assert!(msg.starts_with(&format!("{SOURCE}: ")), "{msg}");
}

fn documents<T: Document + Serialize + PartialEq + Debug>(text: &str) {
    match report::read_documents::<T>(text, SOURCE) {
        Ok(docs) => {
            for d in &docs {
                assert_eq!(d.kind(), T::KIND);
            }
            let again = serde_json::to_string(&docs).expect("documents serialize");
            let back = report::read_documents::<T>(&again, SOURCE)
                .unwrap_or_else(|e| panic!("our own JSON does not read again: {e:#}\n{again}"));
            assert_eq!(back, docs, "documents changed on the way through JSON");
            let pretty = docs.iter().map(|d| serde_json::to_string_pretty(d).expect("serializes")).collect::<Vec<_>>();
            let back = report::read_documents::<T>(&pretty.join("\n"), SOURCE).expect("concatenated documents");
            assert_eq!(back, docs);
            match report::read_document::<T>(text, SOURCE) {
                Ok(one) => assert_eq!(vec![one], docs),
                Err(e) => {
                    assert_ne!(docs.len(), 1);
                    usage_error(&e);
                }
            }
        }
        Err(e) => {
            usage_error(&e);
            assert!(report::read_document::<T>(text, SOURCE).is_err());
        }
    }
}

fn write_back(members: &[InitialMember]) -> String {
    let pairs: Vec<String> =
        members.iter().flat_map(|m| m.peer_urls.iter().map(move |u| format!("{}={u}", m.name))).collect();
    pairs.join(",")
}

fn initial_cluster(list: &str, token: &str) {
    match ids::parse_initial_cluster(list, token) {
        Ok(members) => {
            assert!(!members.is_empty());
            for (i, m) in members.iter().enumerate() {
                assert!(!m.name.is_empty() && !m.peer_urls.is_empty());
                assert!(m.peer_urls.is_sorted(), "{:?}", m.peer_urls);
                for u in &m.peer_urls {
                    assert_eq!(ids::normalize_url(u).ok().as_ref(), Some(u), "not normalized: {u:?}");
                }
                assert_ne!(m.id, 0);
                assert_eq!(m.id, ids::member_id(&m.peer_urls, token));
                assert!(members[..i].iter().all(|o| o.id != m.id && o.name != m.name));
            }
            let all: Vec<&String> = members.iter().flat_map(|m| &m.peer_urls).collect();
            for (i, u) in all.iter().enumerate() {
                assert!(!all[..i].contains(u), "URL {u} twice");
            }
            let again = write_back(&members);
            match ids::parse_initial_cluster(&again, token) {
                Ok(back) => assert_eq!(back, members, "{again:?}"),
                Err(e) => panic!("{again:?} (from {list:?}) does not parse again: {e:#}"),
            }
            let mut id_list: Vec<u64> = members.iter().map(|m| m.id).collect();
            let cluster = ids::cluster_id(&id_list);
            id_list.reverse();
            assert_eq!(ids::cluster_id(&id_list), cluster, "the cluster ID depends on the order");
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.starts_with("--initial-cluster: "), "{msg}");
        }
    }
}

fn crictl_ps(data: &[u8]) {
    match runtime::parse_ps(data) {
        Ok(list) => {
            assert!(list.windows(2).all(|w| w[0].created_at >= w[1].created_at), "not newest first");
            for c in &list {
                assert_eq!(c.running(), c.state == runtime::RUNNING);
            }
        }
        Err(e) => assert!(format!("{e:#}").starts_with("crictl ps: "), "{e:#}"),
    }
}

fuzz_target!(|data: &[u8]| {
    crictl_ps(data);
    let text = String::from_utf8_lossy(data);
    documents::<ClusterStatus>(&text);
    documents::<Snapshot>(&text);
    documents::<DataDirInspection>(&text);

    let (list, token) = text.split_once('\0').unwrap_or((&text, "etcd-cluster"));
    initial_cluster(list, token);
    for raw in list.split(',').chain([list]) {
        if let Ok(u) = ids::normalize_url(raw) {
            assert_eq!(ids::normalize_url(&u).ok().as_ref(), Some(&u), "{raw:?}");
        }
    }
    if let Some(id) = report::parse_hex_id(list) {
        assert_eq!(report::parse_hex_id(&report::hex_id(id)), Some(id));
    }
});
