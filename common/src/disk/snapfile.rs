//! `member/snap/<term>-<index>.snap` (ETCD-DISK-FORMAT.md §7): the raft snapshot a restored member
//! starts from, holding the v2 store JSON with the members, byte for byte as etcd writes it.

use super::pb::{self, Msg};
use super::wal::conf_state;

/// A string as Go's encoding/json writes it (HTML-safe: <, >, & escaped).
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn url_list(urls: &[String]) -> String {
    let parts: Vec<String> = urls.iter().map(|u| go_json_string(u)).collect();
    format!("[{}]", parts.join(","))
}

/// A member's JSON as etcd 3.5 stores it (`members` bucket, WAL conf-change context).
pub fn member_json(id: u64, name: &str, peer_urls: &[String]) -> String {
    let name = if name.is_empty() { String::new() } else { format!(",\"name\":{}", go_json_string(name)) };
    format!("{{\"id\":{id},\"peerURLs\":{}{name}}}", url_list(peer_urls))
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn node(path: &str, index: u64, value: &str, children: &str) -> String {
    format!(
        "{{\"Path\":{},\"CreatedIndex\":{index},\"ModifiedIndex\":{index},\"ExpireTime\":\"{ZERO_TIME}\",\"Value\":{},\"Children\":{children}}}",
        go_json_string(path),
        go_json_string(value)
    )
}

/// The v2 store after creating `/0/members/<id>/raftAttributes` for each member in the given order
/// (3.4/3.5: ascending ID), as Go's encoding/json marshals it.
pub fn v2_store_json(members: &[(u64, Vec<String>)]) -> String {
    let n = members.len() as u64;
    let attrs = |urls: &[String]| format!("{{\"peerURLs\":{}}}", url_list(urls));
    let mut dirs: Vec<(String, String)> = members
        .iter()
        .enumerate()
        .map(|(i, (id, urls))| {
            let hex = format!("{id:x}");
            let index = i as u64 + 1;
            let leaf = node(&format!("/0/members/{hex}/raftAttributes"), index, &attrs(urls), "null");
            let dir = node(&format!("/0/members/{hex}"), index, "", &format!("{{\"raftAttributes\":{leaf}}}"));
            (hex, dir)
        })
        .collect();
    dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let children: Vec<String> = dirs.iter().map(|(hex, d)| format!("\"{hex}\":{d}")).collect();
    let members_dir = node("/0/members", 1, "", &format!("{{{}}}", children.join(",")));
    let zero = node("/0", 0, "", &format!("{{\"members\":{members_dir}}}"));
    let one = node("/1", 0, "", "{}");
    let root = node("/", 0, "", &format!("{{\"0\":{zero},\"1\":{one}}}"));
    let capacity = 1000usize;
    let mut events: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, (id, urls))| {
            let index = i + 1;
            format!(
                "{{\"action\":\"create\",\"node\":{{\"key\":{},\"value\":{},\"modifiedIndex\":{index},\"createdIndex\":{index}}}}}",
                go_json_string(&format!("/0/members/{id:x}/raftAttributes")),
                go_json_string(&attrs(urls))
            )
        })
        .collect();
    events.resize(capacity.max(events.len()), "null".into());
    let stats = format!(
        "{{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\
         \"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\
         \"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}}"
    );
    format!(
        "{{\"Root\":{root},\"WatcherHub\":{{\"EventHistory\":{{\"Queue\":{{\"Events\":[{}],\"Size\":{n},\"Front\":0,\"Back\":{n},\
         \"Capacity\":{capacity}}},\"StartIndex\":1,\"LastIndex\":{n}}}}},\"CurrentIndex\":{n},\"Stats\":{stats},\"CurrentVersion\":2}}",
        events.join(",")
    )
}

/// The `.snap` file: `snappb.Snapshot{crc, raftpb.Snapshot{v2 JSON, {conf_state, index, term}}}`.
pub fn snap_file(v2_json: &str, voters: &[u64], index: u64, term: u64) -> Vec<u8> {
    let metadata = Msg::default().bytes(1, &conf_state(voters)).uint(2, index).uint(3, term).into_bytes();
    let data = Msg::default().bytes(1, v2_json.as_bytes()).bytes(2, &metadata).into_bytes();
    let crc = crc32c::crc32c(&data);
    Msg::default().uint(1, u64::from(crc)).bytes(2, &data).into_bytes()
}

/// What a `.snap` file says: its raft index, term and membership.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapMeta {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// Decodes a `.snap` file; None when it is not one or its CRC does not hold.
pub fn parse(bytes: &[u8]) -> Option<SnapMeta> {
    let outer = pb::fields(bytes)?;
    let crc = pb::uint_of(&outer, 1) as u32;
    let data = pb::bytes_of(&outer, 2)?;
    if crc == 0 || crc32c::crc32c(data) != crc {
        return None;
    }
    let snap = pb::fields(data)?;
    let meta = pb::bytes_of(&snap, 2).and_then(pb::fields)?;
    let cs = pb::bytes_of(&meta, 1).and_then(pb::fields).unwrap_or_default();
    Some(SnapMeta {
        index: pb::uint_of(&meta, 2),
        term: pb::uint_of(&meta, 3),
        voters: pb::uints_of(&cs, 1),
        learners: pb::uints_of(&cs, 2),
    })
}

pub fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_back_what_snap_file_writes() {
        let b = snap_file("{}", &[7, 9], 12, 3);
        assert_eq!(parse(&b), Some(SnapMeta { index: 12, term: 3, voters: vec![7, 9], learners: vec![] }));
        let mut flipped = b.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(parse(&flipped), None, "the CRC catches a flipped byte");
        assert_eq!(parse(&b[..b.len() - 1]), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn go_escaping() {
        assert_eq!(go_json_string("a\"b\\c<d>&\u{1}"), "\"a\\\"b\\\\c\\u003cd\\u003e\\u0026\\u0001\"");
    }

    #[test]
    fn member_json_like_etcd() {
        // The context of the WAL entry in ETCD-DISK-FORMAT.md §6.5.
        assert_eq!(
            member_json(465849586760084880, "n3", &["http://127.0.0.1:25382".into()]),
            r#"{"id":465849586760084880,"peerURLs":["http://127.0.0.1:25382"],"name":"n3"}"#
        );
    }
}
