//! Member and cluster IDs as etcd computes them at bootstrap (ETCD-DISK-FORMAT.md §5), and the
//! parsing of `--initial-cluster` with etcd's checks.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct InitialMember {
    pub name: String,
    /// Normalized and sorted.
    pub peer_urls: Vec<String>,
    pub id: u64,
}

fn sha1_prefix(data: &[u8]) -> u64 {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// SHA-1 of the sorted peer URLs and the token, no separators; first 8 bytes big-endian.
pub fn member_id(sorted_urls: &[String], token: &str) -> u64 {
    let mut b = Vec::new();
    for u in sorted_urls {
        b.extend_from_slice(u.as_bytes());
    }
    b.extend_from_slice(token.as_bytes());
    sha1_prefix(&b)
}

/// SHA-1 of the member IDs ascending, each 8 bytes big-endian.
pub fn cluster_id(ids: &[u64]) -> u64 {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    sha1_prefix(&b)
}

/// A peer URL as etcd's `types.NewURLs` keeps it: trimmed, scheme lower-cased, host:port, no path.
pub fn normalize_url(raw: &str) -> Result<String> {
    let u = raw.trim();
    let Some((scheme, rest)) = u.split_once("://") else { bail!("URL {raw:?} has no scheme") };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        bail!("URL {raw:?}: scheme must be http, https, unix or unixs");
    }
    if rest.contains('/') {
        bail!("URL {raw:?} must not contain a path");
    }
    // Digits only: Rust's parse takes a leading '+', Go's URL parser refuses it ("invalid port").
    let port_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    let Some((host, port)) = rest.rsplit_once(':').filter(|(h, p)| !h.is_empty() && port_ok(p)) else {
        bail!("URL {raw:?} must be host:port");
    };
    // etcd's URL parser refuses an IPv6 address without brackets ("too many colons"): a member
    // given one could never be dialed.
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if host.contains(':') && bracketed.is_none_or(|ip| ip.parse::<std::net::Ipv6Addr>().is_err()) {
        bail!("URL {raw:?}: an IPv6 address goes in brackets, e.g. https://[fd00::1]:{port}");
    }
    Ok(format!("{scheme}://{rest}"))
}

/// `n1=URL,n2=URL,...` (a name may repeat for several URLs) into members with IDs, in the order
/// names first appear. No URL twice, no duplicate ID.
pub fn parse_initial_cluster(s: &str, token: &str) -> Result<Vec<InitialMember>> {
    let mut members: Vec<InitialMember> = Vec::new();
    let mut seen_urls: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else { bail!("--initial-cluster: {part:?} is not name=URL") };
        if name.is_empty() {
            bail!("--initial-cluster: {part:?} has no name");
        }
        let url = normalize_url(url).map_err(|e| anyhow::anyhow!("--initial-cluster: {e}"))?;
        if seen_urls.contains(&url) {
            bail!("--initial-cluster: URL {url} appears twice");
        }
        seen_urls.push(url.clone());
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url),
            None => members.push(InitialMember { name: name.to_string(), peer_urls: vec![url], id: 0 }),
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster: empty");
    }
    for m in &mut members {
        m.peer_urls.sort();
        m.id = member_id(&m.peer_urls, token);
        if m.id == 0 {
            bail!("--initial-cluster: member {} has ID 0", m.name);
        }
    }
    for (i, m) in members.iter().enumerate() {
        if members[..i].iter().any(|o| o.id == m.id) {
            bail!("--initial-cluster: members {} and another have the same ID", m.name);
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors in ETCD-DISK-FORMAT.md §5, confirmed there by etcd servers' `member list`.
    #[test]
    fn ids_match_etcd() {
        let ms = parse_initial_cluster(
            "n1=http://127.0.0.1:25380,n2=http://127.0.0.1:25381,n3=http://127.0.0.1:25382",
            "restoretok",
        )
        .unwrap();
        let ids: Vec<u64> = ms.iter().map(|m| m.id).collect();
        assert_eq!(ids, [0x5606a5a8b25085bb, 0xe04b22db4a72a6dd, 0x067707bb2198ed90]);
        assert_eq!(cluster_id(&ids), 0x4180329efa9c6f95);
        let one = parse_initial_cluster("src=http://127.0.0.1:24380", "srctok").unwrap();
        assert_eq!(one[0].id, 0xfa4cdcdfc6cdf96b);
        assert_eq!(cluster_id(&[one[0].id]), 0x7aa0ff07e96fc64e);
        let default = parse_initial_cluster("x=http://127.0.0.1:25380", "etcd-cluster").unwrap();
        assert_eq!(default[0].id, 0x82039f3eee02bfb3);
        assert_eq!(cluster_id(&[default[0].id]), 0x20f657524b5b6bb1);
        // A name given twice is one member with both URLs, sorted, scheme lower-cased.
        let two = parse_initial_cluster("m=http://127.0.0.2:25390,m=HTTP://127.0.0.1:25390", "etcd-cluster").unwrap();
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].peer_urls, ["http://127.0.0.1:25390", "http://127.0.0.2:25390"]);
        assert_eq!(two[0].id, member_id(&two[0].peer_urls, "etcd-cluster"));
    }

    #[test]
    fn bad_initial_clusters() {
        for (s, want) in [
            ("n1=http://a:1,n2=http://a:1", "appears twice"),
            ("n1=http://a:1/", "path"),
            ("n1=ftp://a:1", "scheme"),
            ("n1", "not name=URL"),
            ("=http://a:1", "no name"),
            ("n1=http://a", "host:port"),
            ("n1=http://10.0.0.1:+2380", "host:port"),
            ("n1=https://fd00::1:2380", "IPv6 address goes in brackets"),
            ("n1=https://[fd00::zz]:2380", "IPv6 address goes in brackets"),
            ("", "empty"),
        ] {
            let err = parse_initial_cluster(s, "t").unwrap_err().to_string();
            assert!(err.contains(want), "{s}: {err}");
        }
        assert!(parse_initial_cluster("n1=https://[fd00::1]:2380", "t").is_ok());
    }
}
