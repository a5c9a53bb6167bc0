//! TLS setup: a rustls server configuration (TLS 1.2+ only, ring provider) from PEM data.

use std::sync::Arc;

use rustls::ServerConfig as RustlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate PEM: {0}")]
    Cert(String),
    #[error("private key PEM: {0}")]
    Key(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Build the server-side TLS configuration from a PEM certificate chain and private key.
/// Only TLS 1.2 and 1.3 exist in rustls, so no older protocol can be negotiated.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<RustlsConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = RustlsConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    // Tickets let clients resume cheaply; stateful session cache is the default.
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}
