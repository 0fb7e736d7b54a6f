//! Edits of a YAML text that keep every line they do not change. A manifest rewritten whole
//! loses its comments and layout, and a value the kubelet's YAML 1.1 reads otherwise than
//! serde_yaml's YAML 1.2 can change meaning on the way (`defaultMode: 0644`, octal to the kubelet,
//! comes back as the string `'0644'`, which it refuses). Each edit finds its lines by what they
//! parse to, and gives up (None) unless it finds exactly one place; the caller checks the whole
//! result against the intended document and writes the document whole otherwise.

use serde_yaml::Value;

/// Words YAML 1.1 reads as booleans, which serde_yaml (YAML 1.2) writes unquoted.
const YAML11_BOOLS: &[&str] =
    &["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"];

/// A word YAML 1.1 reads as a boolean, which serde_yaml (YAML 1.2) writes unquoted.
pub fn yaml11_bool(plain: &str) -> bool {
    YAML11_BOOLS.contains(&plain)
}

/// A plain scalar YAML 1.2 reads as a string but YAML 1.1 may not: a boolean word, a number with
/// `_`, a base-60 number (`1:20`, not in go-yaml v2, but erring on quoting is harmless in a value
/// written new).
fn yaml11_reads_otherwise(plain: &str) -> bool {
    let body = plain.strip_prefix(['-', '+']).unwrap_or(plain);
    let base60 = body.contains(':') && body.split(':').all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    yaml11_bool(plain) || number_with_underscores(plain) || base60
}

/// Each line of a block-style text with where its value starts (after `key: ` or `- `), None
/// inside a block scalar (`|`, `>`), whose lines are text.
fn value_starts(text: &str) -> Vec<(&str, Option<usize>)> {
    let mut out = Vec::new();
    let mut block_indent: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start().len();
        if let Some(b) = block_indent {
            if body.trim().is_empty() || indent > b {
                out.push((line, None));
                continue;
            }
            block_indent = None;
        }
        let item = body.trim_start().trim_start_matches("- ");
        let value_at = match item.find(": ") {
            Some(i) => body.len() - item.len() + i + 2,
            None if body.trim_start().starts_with("- ") => body.len() - item.len(),
            None => body.len(),
        };
        if body[value_at..].starts_with(['|', '>']) {
            block_indent = Some(indent);
        }
        out.push((line, Some(value_at)));
    }
    out
}

/// Digits with `_` (and maybe a point): a string to YAML 1.2, a number to go-yaml v2, the
/// kubelet's reader, which drops the `_`.
fn number_with_underscores(plain: &str) -> bool {
    let body = plain.strip_prefix(['-', '+']).unwrap_or(plain);
    body.contains('_')
        && body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Quotes the plain values of serde_yaml's block output that the kubelet's YAML 1.1 reads as
/// something else than a string (serde_yaml writes every number without `_`, so these are
/// strings): a boolean word (an env value `"on"` written back bare turns into `true`, and the
/// static pod is rejected), digits with `_`. Block scalars are left alone.
pub fn quote_for_yaml11(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (line, at) in value_starts(text) {
        let body = line.trim_end_matches('\n');
        match at.filter(|&a| yaml11_bool(&body[a..]) || number_with_underscores(&body[a..])) {
            Some(a) => out.push_str(&format!("{}'{}'{}", &body[..a], &body[a..], &line[body.len()..])),
            None => out.push_str(line),
        }
    }
    out
}

/// The first plain value of a hand-written text (line number from 1, value) that go-yaml v2 (the
/// kubelet) reads as something else than the string YAML 1.2 reads, so that a whole rewrite
/// would change it for the kubelet: a boolean word (`yes` would come back as 'yes'), digits with a
/// leading zero (`0644`, octal, would come back as '0644'), digits with `_` (they would be
/// quoted). Quoted values, block scalars and comments are no hazard.
pub fn yaml11_hazard(text: &str) -> Option<(usize, String)> {
    let leading_zero = |v: &str| {
        let body = v.strip_prefix(['-', '+']).unwrap_or(v);
        body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    };
    value_starts(text).into_iter().enumerate().find_map(|(n, (line, at))| {
        let value = line.trim_end_matches(['\n', '\r'])[at?..].split(" #").next()?.trim();
        let hazard = yaml11_bool(value) || leading_zero(value) || number_with_underscores(value);
        hazard.then(|| (n + 1, value.to_string()))
    })
}

/// `s` as one YAML scalar on one line, quoted where YAML 1.1 or 1.2 would read it otherwise.
pub fn scalar(s: &str) -> Option<String> {
    let text = serde_yaml::to_string(&Value::String(s.to_string())).ok()?;
    let one = text.strip_suffix('\n').filter(|t| !t.contains('\n'))?;
    Some(if !one.starts_with(['\'', '"']) && yaml11_reads_otherwise(one) {
        format!("'{one}'")
    } else {
        one.to_string()
    })
}

/// A line's indent (spaces) and its content; None for a blank or comment-only line.
fn significant(line: &str) -> Option<(usize, &str)> {
    let body = line.trim_end_matches(['\n', '\r']);
    let content = body.trim_start_matches(' ');
    if content.trim().is_empty() || content.starts_with('#') {
        return None;
    }
    Some((body.len() - content.len(), content))
}

/// `- <scalar>` at some indent: the indent and the string it holds.
fn seq_item(line: &str) -> Option<(usize, String)> {
    let (indent, content) = significant(line)?;
    let rest = content.strip_prefix("- ")?;
    match serde_yaml::from_str::<Value>(rest).ok()? {
        Value::String(s) => Some((indent, s)),
        _ => None,
    }
}

/// Whether the significant content ends a block mapping key `key:` (maybe as `- key:`).
fn is_key_line(content: &str, key: &str) -> bool {
    let content = content.strip_prefix("- ").unwrap_or(content);
    let content = content.split(" #").next().unwrap_or(content).trim_end();
    content.strip_suffix(':') == Some(key)
}

/// The line numbers of a block sequence under `key:` holding exactly `items`, if there is exactly
/// one such sequence in `lines`.
fn find_seq(lines: &[&str], key: &str, items: &[String]) -> Option<Vec<usize>> {
    let mut found = None;
    for start in 0..lines.len() {
        let Some((indent, first)) = seq_item(lines[start]) else { continue };
        if first != items[0] {
            continue;
        }
        let before = lines[..start].iter().rev().find_map(|l| significant(l));
        if !before.is_some_and(|(_, c)| is_key_line(c, key)) {
            continue;
        }
        let mut at = vec![start];
        let mut next = start + 1;
        let whole = loop {
            let Some(line) = lines.get(next) else { break at.len() == items.len() };
            next += 1;
            if significant(line).is_none() {
                continue;
            }
            match seq_item(line) {
                Some((i, s)) if i == indent && at.len() < items.len() && s == items[at.len()] => at.push(next - 1),
                // A further item or a continuation line: not this list.
                Some((i, _)) if i == indent => break false,
                _ => break at.len() == items.len() && significant(line).is_some_and(|(i, _)| i <= indent),
            }
        };
        if whole {
            if found.is_some() {
                return None;
            }
            found = Some(at);
        }
    }
    found
}

/// Replaces the block sequence under `key:` that holds `old` with `new`: the lines of the items
/// kept stay as they are (comments, quoting), removed ones go, new ones are written plainly at the
/// list's indent. None when the list is not found exactly once, or when the result would need
/// another layout (an empty list, a value on several lines).
pub fn replace_seq(text: &str, key: &str, old: &[String], new: &[String]) -> Option<String> {
    if old.is_empty() || new.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = find_seq(&lines, key, old)?;
    let indent = seq_item(lines[at[0]])?.0;
    let (first, last) = (at[0], *at.last()?);
    // Longest common subsequence of old and new: the items kept in place.
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0u16; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out: String = lines[..first].concat();
    let (mut i, mut j, mut line) = (0, 0, first);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out.push_str(&lines[line..=at[i]].concat());
            (line, i, j) = (at[i] + 1, i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removed: its comment lines stay, its own line goes.
            out.push_str(&lines[line..at[i]].concat());
            (line, i) = (at[i] + 1, i + 1);
        } else {
            out.push_str(&format!("{}- {}\n", " ".repeat(indent), scalar(&new[j])?));
            j += 1;
        }
    }
    out.push_str(&lines[last + 1..].concat());
    Some(out)
}

/// Sets `key: value` in the block mapping under `parent:`: the entry's line is rewritten if it
/// holds `old`, else a new line goes after the mapping's last entry. None when the place is not
/// found exactly once.
pub fn set_entry(text: &str, parent: &str, key: &str, old: Option<&str>, value: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let line = format!("{}: {}\n", scalar(key)?, scalar(value)?);
    let mut places = Vec::new();
    for (p, l) in lines.iter().enumerate() {
        let Some((indent, content)) = significant(l) else { continue };
        if !is_key_line(content, parent) || content.starts_with("- ") {
            continue;
        }
        // The mapping's entries: the lines below, more indented.
        let mut entries = Vec::new();
        for (q, l) in lines.iter().enumerate().skip(p + 1) {
            match significant(l) {
                None => continue,
                Some((i, _)) if i <= indent => break,
                Some((i, c)) => entries.push((q, i, c)),
            }
        }
        let child = entries.first()?.1;
        let entry = entries.iter().find(|(_, i, c)| {
            *i == child
                && serde_yaml::from_str::<serde_yaml::Mapping>(c).is_ok_and(|m| m.len() == 1 && m.get(key).is_some())
        });
        match (entry, old) {
            (Some(&(q, _, c)), Some(old)) => {
                let m: serde_yaml::Mapping = serde_yaml::from_str(c).ok()?;
                if m.get(key)?.as_str()? != old {
                    return None;
                }
                places.push((q, q + 1, child));
            }
            (None, None) => {
                // After the last entry and whatever belongs to it (a value on further lines).
                let end = entries.last()?.0;
                places.push((end + 1, end + 1, child));
            }
            _ => return None,
        }
    }
    let [(from, to, indent)] = places[..] else { return None };
    Some([lines[..from].concat(), " ".repeat(indent), line, lines[to..].concat()].concat())
}

/// Adds `key:` holding one entry `entry: value` as the first child of the block mapping under
/// `parent:` (a manifest without annotations gets its `annotations:` this way). None when `parent:`
/// is not found exactly once with children below it.
pub fn add_mapping(text: &str, parent: &str, key: &str, entry: &str, value: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let parents: Vec<(usize, usize)> = (lines.iter().enumerate())
        .filter_map(|(p, l)| {
            significant(l).filter(|(_, c)| is_key_line(c, parent) && !c.starts_with("- ")).map(|(i, _)| (p, i))
        })
        .collect();
    let [(at, indent)] = parents[..] else { return None };
    let child = lines[at + 1..].iter().find_map(|l| significant(l)).map(|(i, _)| i).filter(|&i| i > indent)?;
    let step = " ".repeat(child - indent);
    let block =
        format!("{0}{1}:\n{0}{step}{2}: {3}\n", " ".repeat(child), scalar(key)?, scalar(entry)?, scalar(value)?);
    Some([lines[..=at].concat(), block, lines[at + 1..].concat()].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const TEXT: &str = "\
# kept: a comment at the top
metadata:
  annotations:
    a.io/x: \"1:20\"   # quoted on purpose
  name: etcd
spec:
  containers:
  - command:
    - etcd
    # the peer URL was changed by hand
    - --advertise-client-urls=https://10.0.0.1:2379
    - '--name=cp1'
    - --snapshot-count=10000
    image: etcd:3.5.21-0
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
  volumes:
  - secret:
      defaultMode: 0644
";

    #[test]
    fn a_list_edit_keeps_every_other_line() {
        let old =
            strings(&["etcd", "--advertise-client-urls=https://10.0.0.1:2379", "--name=cp1", "--snapshot-count=10000"]);
        let new = strings(&["etcd", "--force-new-cluster=true", "--name=cp2", "--snapshot-count=10000"]);
        let out = replace_seq(TEXT, "command", &old, &new).unwrap();
        let want = TEXT
            .replace("    - --advertise-client-urls=https://10.0.0.1:2379\n", "")
            .replace("    - '--name=cp1'\n", "    - --force-new-cluster=true\n    - --name=cp2\n");
        assert_eq!(out, want);
        // Back again: only the changed items' lines differ from the start.
        let back = replace_seq(&out, "command", &new, &old).unwrap();
        assert!(back.contains("# the peer URL was changed by hand\n    - --advertise-client-urls"), "{back}");
        assert!(back.contains("defaultMode: 0644\n") && back.contains("\"1:20\"   # quoted"), "{back}");
    }

    #[test]
    fn a_list_not_found_once_is_not_edited() {
        let old = strings(&["etcd", "--name=cp1"]);
        assert_eq!(replace_seq(TEXT, "command", &old, &strings(&["etcd"])), None, "a longer list is another list");
        let items = strings(&["/var/lib/etcd"]);
        assert_eq!(replace_seq(TEXT, "command", &items, &strings(&["/x"])), None, "not under command:");
        let flow = "command: [etcd, --name=cp1]\n";
        assert_eq!(replace_seq(flow, "command", &old, &strings(&["etcd"])), None);
        let all = ["etcd", "--advertise-client-urls=https://10.0.0.1:2379", "--name=cp1", "--snapshot-count=10000"];
        let all = strings(&all);
        assert!(replace_seq(TEXT, "command", &all, &strings(&["etcd"])).is_some());
        assert_eq!(replace_seq(TEXT, "command", &all, &[]), None, "an empty list needs another layout");
        let twice = format!("{TEXT}  - command:\n{}", all.iter().map(|a| format!("    - {a}\n")).collect::<String>());
        assert_eq!(replace_seq(&twice, "command", &all, &strings(&["etcd"])), None, "two places");
    }

    #[test]
    fn an_entry_is_rewritten_or_added_in_place() {
        let out = set_entry(TEXT, "annotations", "a.io/x", Some("1:20"), "on").unwrap();
        assert_eq!(out, TEXT.replace("    a.io/x: \"1:20\"   # quoted on purpose\n", "    a.io/x: 'on'\n"));
        let out = set_entry(TEXT, "annotations", "b.io/joined", None, "2026-11-24T20:00:00Z").unwrap();
        assert_eq!(
            out,
            TEXT.replace("# quoted on purpose\n", "# quoted on purpose\n    b.io/joined: 2026-11-24T20:00:00Z\n")
        );
        assert_eq!(set_entry(TEXT, "annotations", "a.io/x", Some("other"), "v"), None, "not the value read");
        assert_eq!(set_entry(TEXT, "annotations", "a.io/x", None, "v"), None, "there already");
        assert_eq!(set_entry(TEXT, "labels", "k", None, "v"), None, "no such mapping");
    }

    /// The plain values a whole rewrite would change for the kubelet; quoted ones, comments and
    /// block scalars are no hazard.
    #[test]
    fn yaml11_hazards_in_a_hand_written_text() {
        assert_eq!(yaml11_hazard(TEXT), Some((20, "0644".into())));
        for (text, want) in [
            ("spec:\n  hostNetwork: yes\n", Some((2, "yes"))),
            ("a:\n- 09\n", Some((2, "09"))),
            ("a: 1_000 # big\n", Some((1, "1_000"))),
            // go-yaml v2 reads these as YAML 1.2 does: no base 60, 0b is a number to both.
            ("host: ::1\nt: 1:20\nb: 0b101\n", None),
            ("a: '0644'\nb: \"yes\"\nc: 0\nd: 10\ne: -5 # no\n", None),
            ("a: |\n  yes\n  0644\nb: x\n", None),
            ("# yes\na: b\n", None),
        ] {
            assert_eq!(yaml11_hazard(text), want.map(|(n, v)| (n, v.to_string())), "{text:?}");
        }
    }

    /// A whole write quotes the strings go-yaml v2 would read as something else, and nothing else.
    #[test]
    fn a_whole_write_quotes_what_go_yaml_v2_reads_otherwise() {
        let doc: Value = serde_yaml::from_str("a: 'on'\nb: '1_000'\nc: 1000\nd: ::1\ne: |\n  yes\n").unwrap();
        let out = quote_for_yaml11(&serde_yaml::to_string(&doc).unwrap());
        assert_eq!(out, "a: 'on'\nb: '1_000'\nc: 1000\nd: ::1\ne: |\n  yes\n");
        assert_eq!(serde_yaml::from_str::<Value>(&out).unwrap(), doc);
    }

    /// A pod without annotations gets the mapping, indented as its siblings are.
    #[test]
    fn a_mapping_is_added_where_there_is_none() {
        let text = "metadata:\n  labels:\n    component: etcd\n  name: etcd\nspec: {}\n";
        let out = add_mapping(text, "metadata", "annotations", "a.io/x", "on").unwrap();
        assert_eq!(
            out,
            "metadata:\n  annotations:\n    a.io/x: 'on'\n  labels:\n    component: etcd\n  name: etcd\nspec: {}\n"
        );
        assert_eq!(add_mapping("metadata: {}\n", "metadata", "annotations", "k", "v"), None);
        assert_eq!(add_mapping(&format!("{text}{text}"), "metadata", "annotations", "k", "v"), None);
    }

    #[test]
    fn new_scalars_read_the_same_in_yaml_1_1() {
        for (s, want) in [
            ("--name=cp1", "--name=cp1"),
            ("on", "'on'"),
            ("1:20", "'1:20'"),
            ("1_000", "'1_000'"),
            ("2001-12-14", "2001-12-14"),
            ("1-", "1-"),
            ("-5", "'-5'"),
            ("a #b", "'a #b'"),
        ] {
            assert_eq!(scalar(s).as_deref(), Some(want), "{s}");
        }
        assert_eq!(scalar("two\nlines"), None);
        for number in ["-5", "1.5", "1000.0", "80", "0", "1-", ""] {
            assert!(!yaml11_reads_otherwise(number), "{number}");
        }
    }
}
