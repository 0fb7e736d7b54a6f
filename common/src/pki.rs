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

/// (notBefore, notAfter) of the first certificate of a PEM file, as Unix seconds.
pub fn validity(path: &Path) -> Result<(i64, i64)> {
    let der = read_pem_certs(path)?.swap_remove(0);
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("{}: not an X.509 certificate: {e}", path.display()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
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
