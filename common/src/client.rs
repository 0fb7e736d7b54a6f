//! etcd clients over verified TLS: one client per member, each dial bounded by the dial timeout
//! and each request by the command timeout, so one hung member delays nobody.

use crate::cli::{Shared, TlsPaths};
use anyhow::{Result, anyhow};
use etcd_client::{Certificate, Client, Identity, TlsOptions};
use std::future::Future;
use std::time::Duration;

/// Why a member could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Timeout,
    Tls,
    Other,
}

#[derive(Debug, Clone)]
pub struct EndpointError {
    pub kind: FailKind,
    pub message: String,
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EndpointError {}

impl EndpointError {
    /// As the error of `what` (e.g. "https://…: snapshot"): exit 7 when it timed out.
    pub fn context(self, what: impl std::fmt::Display) -> anyhow::Error {
        let message = format!("{what}: {}", self.message);
        match self.kind {
            FailKind::Timeout => crate::exit::coded(crate::exit::TIMEOUT, message),
            _ => anyhow::anyhow!(message),
        }
    }
}

/// The whole source chain of an error, without the repetitions tonic and hyper add.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.retain(|p| !s.contains(p.as_str()));
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn classify(message: String) -> EndpointError {
    let l = message.to_lowercase();
    let kind = if ["certificate", "tls", "handshake", "alert", "x509"].iter().any(|k| l.contains(k)) {
        FailKind::Tls
    } else if l.contains("deadline") || l.contains("timed out") {
        FailKind::Timeout
    } else {
        FailKind::Other
    };
    EndpointError { kind, message }
}

fn timed_out(what: &str, d: Duration) -> EndpointError {
    // etcdctl's wording, so runbooks and searches match.
    EndpointError { kind: FailKind::Timeout, message: format!("context deadline exceeded ({what} {d:?})") }
}

/// Connects to members and runs bounded requests.
#[derive(Clone)]
pub struct Dialer {
    tls: Option<TlsOptions>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
}

/// The client certificate is expired or not valid yet: kubeadm's certificates expire together, so
/// a caller may name the node's others (`err.downcast_ref::<CertOutOfValidity>()`).
#[derive(Debug)]
pub struct CertOutOfValidity(String);

impl std::fmt::Display for CertOutOfValidity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertOutOfValidity {}

/// Reads the CA, certificate and key; a missing or unreadable file is named with its flag.
pub fn load_tls(paths: &TlsPaths) -> Result<TlsOptions> {
    let o = &paths.origin;
    let read = |from: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| anyhow!("{from} {}: cannot read: {e}", path.display()))
    };
    let ca = read(&o.ca, &paths.ca)?;
    crate::pki::read_pem_certs(&paths.ca).map_err(|e| anyhow!("{} {e}", o.ca))?;
    let cert = read(&o.cert, &paths.cert)?;
    crate::pki::read_pem_certs(&paths.cert).map_err(|e| anyhow!("{} {e}", o.cert))?;
    let key = read(&o.key, &paths.key)?;
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
        return Err(anyhow!("{} {}: no PEM private key in it", o.key, paths.key.display()));
    }
    // etcd rejects a client certificate outside its validity, and the rejection reaches a TLS 1.3
    // client only as a closed connection: say what is wrong before asking anyone.
    let (not_before, not_after) = crate::pki::validity(&paths.cert).map_err(|e| anyhow!("{} {e:#}", o.cert))?;
    let now = crate::time::now_secs();
    if now < not_before {
        let from = crate::time::rfc3339_secs(not_before);
        let why = format!("{} {}: not valid before {from} (the client certificate)", o.cert, paths.cert.display());
        return Err(CertOutOfValidity(why).into());
    }
    if now > not_after {
        let until = crate::time::rfc3339_secs(not_after);
        let why = format!("{} {}: expired on {until} (the client certificate)", o.cert, paths.cert.display());
        return Err(CertOutOfValidity(why).into());
    }
    let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca)).identity(Identity::from_pem(cert, key));
    // The TLS setup is built here once (as every connection builds it) to catch a key that is not
    // the certificate's, which would otherwise fail each endpoint on its own.
    tonic::transport::Endpoint::from_static("https://127.0.0.1:2379").tls_config(tls.clone()).map_err(|e| {
        let why = error_chain(&e);
        if why.contains("KeyMismatch") {
            anyhow!("{} {} does not match {} {} ({why})", o.key, paths.key.display(), o.cert, paths.cert.display())
        } else {
            anyhow!("{} {} / {} {}: {why}", o.cert, paths.cert.display(), o.key, paths.key.display())
        }
    })?;
    Ok(tls)
}

impl Dialer {
    /// TLS material is read only when some endpoint needs it.
    pub fn new(shared: &Shared, needs_tls: bool) -> Result<Dialer> {
        let tls = if needs_tls { Some(load_tls(&shared.tls)?) } else { None };
        Ok(Dialer { tls, dial_timeout: shared.dial_timeout, command_timeout: shared.command_timeout })
    }

    /// An established connection (TCP, TLS and HTTP/2 handshakes done) or the reason why not,
    /// within the dial timeout: a frozen member accepts TCP but never finishes the handshake.
    pub async fn connect(&self, url: &str) -> Result<Client, EndpointError> {
        let mut ep = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| classify(format!("bad URL {url}: {}", error_chain(&e))))?
            .connect_timeout(self.dial_timeout);
        if !url.starts_with("https://") {
            // Never silently: a plaintext URL means no encryption and no check of the server. Said
            // once per URL, however many times it is dialed.
            static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
            if !warned.iter().any(|u| u == url) {
                warned.push(url.to_string());
                log::warn!("{url} is plaintext: no TLS, the server is not verified");
            }
        } else {
            let tls = self.tls.clone().ok_or_else(|| classify(format!("{url}: no TLS configuration")))?;
            ep = ep.tls_config(tls).map_err(|e| classify(error_chain(&e)))?;
        }
        let channel = match tokio::time::timeout(self.dial_timeout, ep.connect()).await {
            Err(_) => return Err(timed_out("dial timeout", self.dial_timeout)),
            Ok(Err(e)) => return Err(classify(error_chain(&e))),
            Ok(Ok(c)) => c,
        };
        Client::from_channel(etcd_client::Channel::Tonic(channel), None).await.map_err(|e| classify(error_chain(&e)))
    }

    /// One request, bounded by the command timeout.
    pub async fn call<T, F>(&self, fut: F) -> Result<T, EndpointError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.command_timeout, fut).await {
            Err(_) => Err(timed_out("command timeout", self.command_timeout)),
            Ok(Err(e)) => Err(classify(error_chain(&e))),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

/// The async runtime for a tool: a small one, the work is a handful of parallel RPCs.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        assert_eq!(classify("invalid peer certificate: UnknownIssuer".into()).kind, FailKind::Tls);
        assert_eq!(classify("tcp connect error: Connection refused (os error 111)".into()).kind, FailKind::Other);
        assert_eq!(
            timed_out("dial timeout", Duration::from_secs(2)).message,
            "context deadline exceeded (dial timeout 2s)"
        );
    }

    #[test]
    fn chain_drops_repeats() {
        let inner = std::io::Error::other("Connection refused");
        let outer = anyhow::Error::new(inner).context("transport error");
        let e: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(error_chain(e), "transport error: Connection refused");
    }
}
