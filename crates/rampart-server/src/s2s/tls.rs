//! TLS for federation: one rustls client configuration (our certificate as the client
//! certificate, peers verified against the trust anchors for their domain) and one server
//! configuration that asks peers for their certificate and verifies its chain.
//!
//! Trust anchors are the configured CA bundle plus, unless switched off, the Mozilla root
//! set compiled in (`webpki-roots`). Whether a verified peer certificate is valid for the
//! domain the peer claims is decided per stream by [`cert_matches_domain`].

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::TlsError;

/// ALPN protocol id for server-to-server streams (XEP-0368).
pub const ALPN_S2S: &[u8] = b"xmpp-server";

/// The TLS side of federation.
#[derive(Clone)]
pub struct S2sTls {
    pub connector: TlsConnector,
    pub acceptor: TlsAcceptor,
}

/// Parse every certificate in a PEM bundle (the CA file).
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| TlsError::Cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert("no certificate found in the CA bundle".into()));
    }
    Ok(certs)
}

/// Build the federation TLS configurations from our certificate chain and key (PEM), the
/// extra trust anchors, and whether the compiled-in public roots are trusted too.
pub fn build(cert_pem: &[u8], key_pem: &[u8], extra_roots: &[CertificateDer<'static>], public_roots: bool) -> Result<S2sTls, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().map_err(|e| TlsError::Cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(extra_roots.iter().cloned());
    if public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(certs.clone(), key.clone_key())?;
    client.alpn_protocols = vec![ALPN_S2S.to_vec()];

    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![ALPN_S2S.to_vec()];
    Ok(S2sTls { connector: TlsConnector::from(Arc::new(client)), acceptor: TlsAcceptor::from(Arc::new(server)) })
}

/// Is `cert` (already verified up to a trust anchor) valid for `domain`?
pub fn cert_matches_domain(cert: &CertificateDer<'_>, domain: &str) -> bool {
    let Ok(parsed) = ParsedCertificate::try_from(cert) else { return false };
    let Ok(name) = ServerName::try_from(domain) else { return false };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// `TLSv1_3 TLS13_AES_256_GCM_SHA384` for the link table.
pub fn describe(conn: &rustls::CommonState) -> String {
    let v = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_else(|| "?".into());
    let s = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "?".into());
    format!("{v} {s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(domain: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![domain.to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn builds_and_matches_names() {
        let (cert, key) = issue("a.example");
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        build(cert.as_bytes(), key.as_bytes(), &[der.clone()], false).unwrap();
        assert!(cert_matches_domain(&der, "a.example"));
        assert!(!cert_matches_domain(&der, "b.example"));
        assert!(!cert_matches_domain(&der, "not a domain"));
        assert!(parse_ca_bundle(b"nothing here").is_err());
        assert_eq!(parse_ca_bundle(cert.as_bytes()).unwrap().len(), 1);
    }
}
