//! kubeadm-layout etcd certificates for lab nodes: CA `etcd-ca`; server and peer certificates with
//! both EKUs and SANs for the node name, IP, localhost and 127.0.0.1; a client-only healthcheck-client.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};

pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// How long a leaf certificate is valid, relative to now (kubeadm: one year).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub from_days: i64,
    pub to_days: i64,
}

impl Default for Validity {
    fn default() -> Self {
        Validity { from_days: -1, to_days: 365 }
    }
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).expect("CA cert");
        let key_pem = key.serialize_pem();
        Ca { cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) }
    }

    /// A leaf certificate and its key, PEM.
    pub fn issue(&self, cn: &str, sans: &[String], server: bool, client: bool, validity: Validity) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(sans.to_vec()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(validity.from_days);
        params.not_after = now + Duration::days(validity.to_days);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a node's `etc/kubernetes/pki/etcd` the way kubeadm lays it out.
    pub fn write_node_pki(&self, dir: &Path, node_name: &str, ip: &str, server_validity: Validity) {
        std::fs::create_dir_all(dir).expect("pki dir");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write pki file");
        write("ca.crt", &self.cert_pem);
        write("ca.key", &self.key_pem);
        let sans = vec![node_name.to_string(), "localhost".to_string(), ip.to_string(), "127.0.0.1".to_string()];
        let (c, k) = self.issue(node_name, &sans, true, true, server_validity);
        write("server.crt", &c);
        write("server.key", &k);
        let (c, k) = self.issue(node_name, &sans, true, true, Validity::default());
        write("peer.crt", &c);
        write("peer.key", &k);
        let (c, k) = self.issue("kube-etcd-healthcheck-client", &[], false, true, Validity::default());
        write("healthcheck-client.crt", &c);
        write("healthcheck-client.key", &k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// During a CA rotation ca.crt holds the old and the new CA, often under the same name: a
    /// leaf signed by either one checks, as etcd's TLS accepts it; one signed by neither does not.
    #[test]
    fn a_leaf_checks_against_any_ca_of_the_bundle() {
        let dir = std::env::temp_dir().join(format!("pki-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, new, other) = (Ca::new("etcd-ca"), Ca::new("etcd-ca"), Ca::new("etcd-ca"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).unwrap();
            dir.join(name)
        };
        let bundle = write("ca.crt", &format!("{}{}", old.cert_pem, new.cert_pem));
        let sans = vec!["node1".to_string(), "10.0.0.11".to_string()];
        let (leaf, _) = new.issue("node1", &sans, true, true, Validity::default());
        let leaf = write("server.crt", &leaf);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ip = Some("10.0.0.11".parse().unwrap());
        common::pki::check_leaf(&leaf, &bundle, now, ip).unwrap();
        let only_other = write("other.crt", &other.cert_pem);
        let err = common::pki::check_leaf(&leaf, &only_other, now, ip).unwrap_err().to_string();
        assert!(err.contains("not signed by the CA"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A certificate with its chain expires with the first of them to expire, wherever it stands
    /// in the file; a CA bundle with the first of its CAs still valid to expire (halfway through
    /// a rotation the old one still signs what is in use), an expired one left in it being the
    /// rotation done. etcd-status warns on these.
    #[test]
    fn a_chain_expires_with_its_soonest_certificate_a_bundle_with_its_latest() {
        let dir = std::env::temp_dir().join(format!("pki-soonest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("etcd-ca");
        let (long, _) = ca.issue("a", &[], false, true, Validity::default());
        let (short, _) = ca.issue("b", &[], false, true, Validity { from_days: -1, to_days: 5 });
        let path = dir.join("bundle.crt");
        std::fs::write(&path, format!("{long}{short}")).unwrap();
        let (_, not_after) = common::pki::validity(&path).unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert_eq!(common::pki::days_left(not_after, now), 5);
        let (expired, _) = ca.issue("c", &[], false, true, Validity { from_days: -30, to_days: -1 });
        let bundle = dir.join("ca.crt");
        std::fs::write(&bundle, format!("{expired}{short}")).unwrap();
        let (_, not_after) = common::pki::bundle_validity(&bundle, now).unwrap();
        assert_eq!(common::pki::days_left(not_after, now), 5);
        std::fs::write(&bundle, format!("{short}{long}")).unwrap();
        let (_, not_after) = common::pki::bundle_validity(&bundle, now).unwrap();
        assert_eq!(common::pki::days_left(not_after, now), 5, "the old CA still valid is the one to renew");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
