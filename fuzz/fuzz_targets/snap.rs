//! `.snap` files: the decoder on arbitrary bytes, and the writer read back.
//!
//! Invariants checked besides "no panic, no hang, no unbounded allocation":
//! - `parse(snap_file(json, voters, index, term))` gives back index, term and voters (values derived
//!   from the input); the one exception is a data part whose CRC-32C is 0, which etcd too refuses
//!   as an empty snapshot;
//! - any single changed byte of the data part makes `parse` refuse the file (the CRC);
//! - the JSON the writer embeds (`go_json_string`, `member_json`, `v2_store_json`) is JSON, and
//!   reads back to the strings and numbers it was made from.
#![no_main]

use common::disk::pb;
use common::disk::snapfile::{self, SnapMeta};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn round_trip(u: &mut Unstructured) -> Result<()> {
    let json: String = u.arbitrary()?;
    let voters: Vec<u64> = (0..u.int_in_range(0..=16)?).map(|_| u.arbitrary()).collect::<Result<_>>()?;
    let (index, term): (u64, u64) = u.arbitrary()?;
    let out = snapfile::snap_file(&json, &voters, index, term);

    let outer = pb::fields(&out).expect("the writer's output decodes");
    let crc = pb::uint_of(&outer, 1) as u32;
    let data = pb::bytes_of(&outer, 2).expect("a data field");
    assert_eq!(crc, crc32c::crc32c(data), "the writer's CRC");
    let want = SnapMeta { index, term, voters, learners: vec![] };
    match snapfile::parse(&out) {
        Some(got) => assert_eq!(got, want),
        None => assert_eq!(crc, 0, "parse refused what snap_file wrote"),
    }

    // One byte of the data part changed: the CRC catches it (CRC-32C finds every error burst of up
    // to 32 bits). The data part is the file's tail.
    if !data.is_empty() {
        let at = out.len() - data.len() + u.choose_index(data.len())?;
        let flip = u.int_in_range(1..=255u8)?;
        let mut bad = out.clone();
        bad[at] ^= flip;
        assert_eq!(snapfile::parse(&bad), None, "a changed byte at {at} went unnoticed");
    }

    // The JSON pieces.
    assert_eq!(serde_json::from_str::<String>(&snapfile::go_json_string(&json)).ok(), Some(json.clone()));
    let id: u64 = u.arbitrary()?;
    let urls: Vec<String> = (0..u.int_in_range(0..=3)?).map(|_| u.arbitrary()).collect::<Result<_>>()?;
    let member: Value = serde_json::from_str(&snapfile::member_json(id, &json, &urls)).expect("member JSON");
    assert_eq!(member["id"].as_u64(), Some(id));
    let peer_urls: Vec<&str> = member["peerURLs"].as_array().expect("peerURLs").iter().filter_map(Value::as_str).collect();
    assert_eq!(peer_urls, urls);
    assert_eq!(member.get("name").and_then(Value::as_str), (!json.is_empty()).then_some(json.as_str()));
    let members: Vec<(u64, Vec<String>)> = (0..u.int_in_range(0..=4)?)
        .map(|i| Ok((u.arbitrary::<u64>()? ^ i, urls.clone())))
        .collect::<Result<_>>()?;
    let store: Value = serde_json::from_str(&snapfile::v2_store_json(&members)).expect("v2 store JSON");
    assert_eq!(store["CurrentIndex"].as_u64(), Some(members.len() as u64));
    assert_eq!(snapfile::snap_name(term, index).len(), 16 + 1 + 16 + 5);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if let Some(meta) = snapfile::parse(data) {
        // Each voter and learner took at least two bytes of the input.
        assert!(2 * (meta.voters.len() + meta.learners.len()) <= data.len());
    }
    let _ = round_trip(&mut Unstructured::new(data));
});
