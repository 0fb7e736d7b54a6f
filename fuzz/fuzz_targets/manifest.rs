//! The static pod manifest: parsing, the flag readers, the edits and the YAML they write back.
//!
//! The input is `YAML \0 NAME \0 VALUE`: the manifest text, then a flag (or annotation) name and a
//! value for the edits (defaults when missing).
//!
//! Invariants checked besides "no panic, no hang, no unbounded allocation":
//! - a parse error names the file;
//! - `flags()`, `flag()` and `force_new_cluster()` agree with `flag_list()`;
//! - `to_yaml()` of a parsed manifest parses again to the same command line, annotations, mounts;
//! - the edits succeed exactly when the container's command list starts with the program (a
//!   non-empty string not starting with `-`);
//! - after `set_flag(name, v)`, `flag(name) == Some(v)`, once, also once written out and read
//!   again; after `remove_flag(name)` the flag is gone, and it says whether one was there (for a
//!   plain flag name: `[A-Za-z0-9._-]`, not starting with `-`);
//! - a flag that was not there, set and removed again, leaves the YAML as it was;
//! - after `set_annotation(k, v)`, the annotation reads back, also once written out and read again.
#![no_main]

use common::manifest::Manifest;
use libfuzzer_sys::fuzz_target;
use serde_yaml::Value;
use std::path::Path;

const PATH: &str = "/fuzz/etcd.yaml";

fn reparse(m: &Manifest) -> Option<Manifest> {
    // Writing may refuse a document (serde_yaml's serializer has limits); that is an error, not a bug.
    let text = m.to_yaml().ok()?;
    match Manifest::parse(Path::new(PATH), &text) {
        Ok(back) => Some(back),
        Err(e) => panic!("our own YAML does not parse again: {e:#}\n--- YAML:\n{text}"),
    }
}

/// A flag name as etcd has them, for which the edits must leave `flag(name)` as asked.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether the container Manifest::parse picks (named etcd, else the one whose command is etcd) has
/// a command list that starts with the program: the edits work on that list only.
fn program_first(text: &str) -> bool {
    let Ok(doc) = serde_yaml::from_str::<Value>(text) else { return false };
    let Some(containers) = doc["spec"]["containers"].as_sequence() else { return false };
    let Some(c) = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("etcd"))
        .or_else(|| containers.iter().find(|c| c["command"][0].as_str() == Some("etcd")))
    else {
        return false;
    };
    c["command"]
        .as_sequence()
        .and_then(|s| s.first())
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty() && !p.starts_with('-'))
}

fn same_pod(a: &Manifest, b: &Manifest) {
    assert_eq!(a.argv, b.argv, "the command line changed on the way through YAML");
    assert_eq!(a.annotations, b.annotations, "the annotations changed on the way through YAML");
    assert_eq!(a.mounts, b.mounts, "the mounts changed on the way through YAML");
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let name = parts.next().map_or("force-new-cluster".into(), String::from_utf8_lossy);
    let value = parts.next().map_or("true".into(), String::from_utf8_lossy);

    let m = match Manifest::parse(Path::new(PATH), &text) {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.starts_with(&format!("manifest {PATH}: ")), "{msg}");
            return;
        }
    };
    assert!(!m.argv.is_empty());

    // The readers agree with each other.
    let list = m.flag_list();
    let flags = m.flags();
    assert_eq!(flags, list.iter().cloned().collect());
    for (k, v) in &flags {
        assert_eq!(m.flag(k).as_ref(), Some(v));
    }
    assert_eq!(m.force_new_cluster(), m.flag("force-new-cluster").is_some_and(|v| v != "false"));
    for u in m.client_urls() {
        assert!(!u.is_empty() && !u.contains(',') && u.trim() == u, "{u:?}");
    }
    for (n, u) in m.initial_cluster() {
        assert!(!n.contains(',') && !u.contains(','));
    }
    let rootfs = Path::new("/rootfs");
    for (path, by) in m.certificate_files(rootfs) {
        assert!(path.starts_with(rootfs) && !by.is_empty());
    }
    assert!(m.host_path(rootfs, &value).starts_with(rootfs));
    // A data dir the tools act on is strictly below the rootfs, whatever the flag and mounts say.
    if let Ok(d) = m.data_dir(rootfs) {
        let below = d.strip_prefix(rootfs).expect("data dir under the rootfs");
        assert!(below.components().all(|c| matches!(c, std::path::Component::Normal(_))), "{d:?}");
        assert!(below.components().next().is_some(), "{d:?}");
    }

    // Written out and read again, unchanged.
    if let Some(back) = reparse(&m) {
        same_pod(&m, &back);
    }

    let editable = program_first(&text);
    let plain = plain(&name);

    let mut set = m.clone();
    let r = set.set_flag(&name, &value);
    assert_eq!(r.is_ok(), editable, "set_flag({name:?}): {r:?}");
    if r.is_ok() && plain {
        assert_eq!(set.flag(&name).as_deref(), Some(&*value), "set_flag({name:?}, {value:?})");
        // Where an existing flag was is kept, a new one goes in kubeadm's order: either way once.
        let count = set.flag_list().iter().filter(|(k, _)| *k == name).count();
        assert_eq!(count, 1, "set_flag({name:?}) left {count} of them");
        if let Some(back) = reparse(&set) {
            same_pod(&set, &back);
            assert_eq!(back.flag(&name).as_deref(), Some(&*value), "set_flag({name:?}, {value:?}) after YAML");
        }
    }

    let mut removed = m.clone();
    let r = removed.remove_flag(&name);
    assert_eq!(r.is_ok(), editable, "remove_flag({name:?}): {r:?}");
    if let Ok(changed) = r
        && plain
    {
        assert_eq!(removed.flag(&name), None, "remove_flag({name:?})");
        assert_eq!(changed, m.flag(&name).is_some(), "remove_flag({name:?}) said {changed}");
        assert!(!removed.remove_flag(&name).expect("a second remove"), "remove_flag({name:?}) twice");
        if let Some(back) = reparse(&removed) {
            same_pod(&removed, &back);
            assert_eq!(back.flag(&name), None);
        }
    }

    // A flag set and removed again leaves the whole pod as it was (no key inserted on the way).
    if editable && plain && m.flag(&name).is_none() {
        let mut round = m.clone();
        round.set_flag(&name, &value).expect("set_flag on an editable manifest");
        assert!(round.remove_flag(&name).expect("remove_flag on an editable manifest"));
        assert_eq!(round.to_yaml().ok(), m.to_yaml().ok(), "set_flag then remove_flag({name:?}) changed the YAML");
    }

    let mut annotated = m.clone();
    if annotated.set_annotation(&name, &value).is_ok() {
        assert_eq!(annotated.annotations.get(&*name).map(String::as_str), Some(&*value));
        if let Some(back) = reparse(&annotated) {
            same_pod(&annotated, &back);
        }
    }
});
