//! Certificate files: reading PEM, validity. Errors name the file.

use anyhow::{Result, anyhow};
use std::path::Path;
use x509_parser::prelude::*;

/// Every certificate in a PEM file, as DER.
pub fn read_pem_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(&data) {
        let pem = pem.map_err(|e| anyhow!("{}: bad PEM: {e}", path.display()))?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(anyhow!("{}: no PEM certificate in it", path.display()));
    }
    Ok(out)
}

/// (notBefore, notAfter) of every certificate of a PEM file, as Unix seconds, in file order.
fn validities(path: &Path) -> Result<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for der in read_pem_certs(path)? {
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| anyhow!("{}: not an X.509 certificate: {e}", path.display()))?;
        let v = cert.validity();
        out.push((v.not_before.timestamp(), v.not_after.timestamp()));
    }
    Ok(out)
}

/// (notBefore, notAfter) of a certificate file, as Unix seconds: the leaf's start, and the end of
/// whichever of it and the chain after it expires first (the chain is only as good as that).
pub fn validity(path: &Path) -> Result<(i64, i64)> {
    let all = validities(path)?;
    let end = all.iter().map(|v| v.1).min().unwrap_or(0);
    Ok((all[0].0, end))
}

/// (notBefore, notAfter) of a CA bundle: of its CAs still valid at `now`, the one that expires
/// first (it may still sign the certificates in use, halfway through a rotation); an old CA
/// expired already is the rotation done (it can sign nothing that works). All expired: the last.
pub fn bundle_validity(path: &Path, now: i64) -> Result<(i64, i64)> {
    let all = validities(path)?;
    let live = all.iter().filter(|v| v.1 > now).min_by_key(|v| v.1);
    Ok(live.or_else(|| all.iter().max_by_key(|v| v.1)).copied().unwrap_or_default())
}

/// Checks a leaf certificate for a node: it parses, chains to the CA (issuer and signature), is
/// valid now, and, when asked, carries `ip` among its IP SANs. The error says which and names the file.
pub fn check_leaf(path: &Path, ca_path: &Path, now: i64, ip: Option<std::net::IpAddr>) -> Result<()> {
    let shown = path.display();
    let der = read_pem_certs(path)?.swap_remove(0);
    let ca_ders = read_pem_certs(ca_path)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| anyhow!("{shown}: not an X.509 certificate: {e}"))?;
    let mut cas = Vec::new();
    for ca_der in &ca_ders {
        let (_, ca) = X509Certificate::from_der(ca_der)
            .map_err(|e| anyhow!("{}: not an X.509 certificate: {e}", ca_path.display()))?;
        cas.push(ca);
    }
    // Any CA of the bundle (old and new during a CA rotation), as etcd's TLS accepts.
    let signed =
        |ca: &X509Certificate| cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    if !cas.iter().any(signed) {
        return Err(anyhow!("{shown}: not signed by the CA {}", ca_path.display()));
    }
    let v = cert.validity();
    if now < v.not_before.timestamp() {
        return Err(anyhow!("{shown}: not valid before {}", crate::time::rfc3339_secs(v.not_before.timestamp())));
    }
    if now > v.not_after.timestamp() {
        return Err(anyhow!("{shown}: expired on {}", crate::time::rfc3339_secs(v.not_after.timestamp())));
    }
    if let Some(ip) = ip {
        let octets: Vec<u8> = match ip {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        let has = cert.subject_alternative_name().ok().flatten().is_some_and(|san| {
            san.value.general_names.iter().any(|n| matches!(n, GeneralName::IPAddress(b) if *b == octets.as_slice()))
        });
        if !has {
            return Err(anyhow!("{shown}: its SANs lack the IP address {ip}"));
        }
    }
    Ok(())
}

/// Whole days from `now` until `not_after` (negative once expired).
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_down() {
        assert_eq!(days_left(86_400 * 30, 0), 30);
        assert_eq!(days_left(86_400 * 30 - 1, 0), 29);
        assert_eq!(days_left(0, 1), -1);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("pki-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("junk.crt");
        std::fs::write(&f, "not a pem").unwrap();
        let err = read_pem_certs(&f).unwrap_err().to_string();
        assert_eq!(err, format!("{}: no PEM certificate in it", f.display()));
        let err = read_pem_certs(&dir.join("absent.crt")).unwrap_err().to_string();
        assert!(err.contains("absent.crt: cannot read: No such file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
