//! `fleet.tls`: the CA, certificate and key files read into a rustls
//! client configuration (the `ring` provider), or a one-line error naming
//! the file and what is wrong with it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

use super::TlsFiles;

/// The largest PEM file read.
const MAX_PEM: u64 = 1 << 20;

/// Read `files` (their bytes also into `digest`) into a client
/// configuration: etcd's certificate checked against `ca`, and `cert` with
/// `key` offered when etcd asks for a client certificate.
pub(super) fn load(
    files: &TlsFiles,
    digest: &mut sha2::Sha256,
) -> Result<Arc<rustls::ClientConfig>, String> {
    match (&files.cert, &files.key) {
        (Some(_), None) => return Err("cert needs key".into()),
        (None, Some(_)) => return Err("key needs cert".into()),
        _ => {}
    }
    let ca = read("ca", &files.ca, digest)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca) {
        let c = c.map_err(|e| format!("ca {}: {e}", files.ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("ca {}: {e}", files.ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "ca {}: no PEM certificate in it",
            files.ca.display()
        ));
    }
    // ring, not aws-lc-rs (which needs cmake to build). rustls marks
    // ring's provider deprecated for its lack of post-quantum key
    // exchange; the classic groups (X25519, P-256) are what is agreed.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("ca: {e}"))?
        .with_root_certificates(roots);
    let mut cfg = match (&files.cert, &files.key) {
        (Some(cert_path), Some(key_path)) => {
            let pem = read("cert", cert_path, digest)?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cert {}: {e}", cert_path.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "cert {}: no PEM certificate in it",
                    cert_path.display()
                ));
            }
            let pem = read("key", key_path, digest)?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                format!("key {}: no usable PEM private key: {e}", key_path.display())
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "cert {} with key {}: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A small regular file's bytes (also into `digest`).
fn read(what: &str, path: &Path, digest: &mut sha2::Sha256) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_PEM {
        return Err(format!(
            "{what} {shown}: not a regular file of at most {MAX_PEM} bytes"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    digest.update(what.as_bytes());
    digest.update((bytes.len() as u64).to_le_bytes());
    digest.update(&bytes);
    Ok(bytes)
}
