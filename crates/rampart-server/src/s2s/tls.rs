//! TLS for federation: one rustls client configuration (our certificate as the client
//! certificate, peers verified against the trust anchors for their domain) and one server
//! configuration that asks peers for their certificate and verifies its chain.
//!
//! Trust anchors are the configured CA bundle plus, unless switched off, the Mozilla root
//! set compiled in (`webpki-roots`). Whether a verified peer certificate is valid for the
//! domain the peer claims is decided per stream by [`cert_matches_domain`].
//!
//! A peer's client certificate is checked after the handshake ([`S2sTls::client_chain_valid`])
//! rather than during it, so a peer the administrator allows to use dialback (XEP-0220) is not
//! cut off for a self-signed certificate; every other peer is refused at authentication.
//! For the same reason, links to dialback peers use [`S2sTls::dialback_connector`], which
//! checks the server certificate after the handshake ([`S2sTls::server_chain_valid`]).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
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
    /// For dialback peers only: the server certificate is checked after the handshake.
    pub dialback_connector: TlsConnector,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

impl S2sTls {
    /// Does a peer's client certificate chain (end entity first) lead to a trust anchor?
    pub fn client_chain_valid(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((end, rest)) = chain.split_first() else { return false };
        self.client_verifier.verify_client_cert(end, rest, UnixTime::now()).is_ok()
    }

    /// Is a server certificate chain valid for `domain`?
    pub fn server_chain_valid(&self, chain: &[CertificateDer<'static>], domain: &str) -> bool {
        let Some((end, rest)) = chain.split_first() else { return false };
        let Ok(name) = ServerName::try_from(domain.to_owned()) else { return false };
        self.server_verifier.verify_server_cert(end, rest, &name, &[], UnixTime::now()).is_ok()
    }
}

/// Takes any client certificate during the handshake (the handshake signature is still
/// verified with its key); the chain is judged afterwards.
#[derive(Debug)]
struct LateClientVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for LateClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(&self, _end: &CertificateDer<'_>, _rest: &[CertificateDer<'_>], _now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Takes any server certificate during the handshake (signatures still verified); used only
/// towards dialback peers, whose certificate is judged afterwards.
#[derive(Debug)]
struct LateServerVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for LateServerVerifier {
    fn verify_server_cert(&self, _end: &CertificateDer<'_>, _rest: &[CertificateDer<'_>], _name: &ServerName<'_>, _ocsp: &[u8], _now: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
    let mut dialback = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LateServerVerifier(provider.clone())))
        .with_client_auth_cert(certs.clone(), key.clone_key())?;
    dialback.alpn_protocols = vec![ALPN_S2S.to_vec()];
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Cert(e.to_string()))?;

    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(Arc::new(LateClientVerifier(client_verifier.clone())))
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![ALPN_S2S.to_vec()];
    Ok(S2sTls {
        connector: TlsConnector::from(Arc::new(client)),
        acceptor: TlsAcceptor::from(Arc::new(server)),
        dialback_connector: TlsConnector::from(Arc::new(dialback)),
        client_verifier,
        server_verifier,
    })
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
        let tls = build(cert.as_bytes(), key.as_bytes(), &[der.clone()], false).unwrap();
        assert!(!tls.server_chain_valid(std::slice::from_ref(&der), "b.example"));
        let (other, _) = issue("a.example");
        let other = CertificateDer::from_pem_slice(other.as_bytes()).unwrap();
        assert!(!tls.client_chain_valid(&[other]));
        assert!(!tls.client_chain_valid(&[]));
        assert!(cert_matches_domain(&der, "a.example"));
        assert!(!cert_matches_domain(&der, "b.example"));
        assert!(!cert_matches_domain(&der, "not a domain"));
        assert!(parse_ca_bundle(b"nothing here").is_err());
        assert_eq!(parse_ca_bundle(cert.as_bytes()).unwrap().len(), 1);
    }
}
