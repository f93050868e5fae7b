//! TLS for `wss://` brokers: the public web roots, plus the certificates in
//! `$CLAUDEMESH_CA_FILE` (PEM) for brokers behind a private CA or a self-signed certificate.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_tungstenite::Connector;

/// Builds the connector for broker links. `None` means tungstenite's default (web roots).
pub fn connector_from_env() -> Result<Option<Connector>, String> {
    match std::env::var_os("CLAUDEMESH_CA_FILE").filter(|v| !v.is_empty()) {
        Some(path) => connector_with(Path::new(&path)).map(Some),
        None => Ok(None),
    }
}

/// Trusts the web roots and every certificate in the PEM file `ca_file`.
pub fn connector_with(ca_file: &Path) -> Result<Connector, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let certs = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read CA file {}: {e}", ca_file.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificate", ca_file.display()));
    }
    for c in certs {
        roots.add(c).map_err(|e| format!("CA file {}: {e}", ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(cfg)))
}
