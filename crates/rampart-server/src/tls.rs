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

#[cfg(test)]
mod tests {
    //! The server's TLS stream over the patched rustls (`vendor/rustls`), which frees its
    //! empty read buffer whenever a read finds nothing more to read: data must arrive intact
    //! across idle reads, records split across reads, and records larger than the buffer.
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (Arc<RustlsConfig>, Arc<rustls::ClientConfig>) {
        let c = rcgen::generate_simple_self_signed(vec!["example.test".to_owned()]).unwrap();
        let (cert, key) = (c.cert.pem(), c.signing_key.serialize_pem());
        let server = server_config(cert.as_bytes(), key.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(c.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// Read exactly `n` bytes, or fail after a generous deadline.
    async fn read_n<R: AsyncReadExt + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(20), r.read_exact(&mut buf)).await.expect("data in time").expect("read");
        buf
    }

    #[tokio::test]
    async fn records_arrive_intact_across_idle_and_split_reads() {
        let (server_cfg, client_cfg) = pair();
        // Client ↔ relay ↔ server: the relay forwards the client's bytes in uneven pieces
        // (7, 13, 4113 and 300 bytes in turn) and yields between them, so the server's reads
        // often end inside a record (the buffer must be kept) and often find nothing (the
        // buffer is freed, then allocated again).
        let (client_io, relay_in) = tokio::io::duplex(1 << 16);
        let (relay_out, server_io) = tokio::io::duplex(1 << 16);
        let (mut relay_in_r, mut relay_in_w) = tokio::io::split(relay_in);
        let (mut relay_out_r, mut relay_out_w) = tokio::io::split(relay_out);
        let up = tokio::spawn(async move {
            let mut chunk = [0u8; 4113];
            for size in [7, 13, 4113, 300].into_iter().cycle() {
                let n = match relay_in_r.read(&mut chunk[..size]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if relay_out_w.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        });
        let down = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut relay_out_r, &mut relay_in_w).await;
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
        let connector = tokio_rustls::TlsConnector::from(client_cfg);
        let name = rustls_pki_types::ServerName::try_from("example.test").unwrap();
        let (server, client) = tokio::join!(acceptor.accept(server_io), connector.connect(name, client_io));
        let (mut server, mut client) = (server.expect("server handshake"), client.expect("client handshake"));

        // Small writes with idle gaps between them.
        for i in 0..5u8 {
            let msg = format!("<message id='{i}'><body>hi</body></message>");
            client.write_all(msg.as_bytes()).await.unwrap();
            client.flush().await.unwrap();
            assert_eq!(read_n(&mut server, msg.len()).await, msg.as_bytes());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A write of several full-size records (more than the 4 KiB read buffer each).
        let big: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        client.write_all(&big).await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(read_n(&mut server, big.len()).await, big);
        // The server still answers after all that.
        server.write_all(b"ok").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(read_n(&mut client, 2).await, b"ok");
        drop((client, server));
        up.abort();
        down.abort();
    }
}
