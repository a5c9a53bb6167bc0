//! Server dialback (XEP-0220), only for the domains the administrator lists in
//! `[s2s] dialback`: the fallback for peers whose certificate does not validate. Always
//! over TLS. Keys follow XEP-0185: HMAC-SHA256 keyed with SHA-256 of the server secret over
//! "receiving originating stream-id", so any of our processes can verify them.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use rampart_proto::{Element, ns};
use rampart_xml::{Event, Limits};
use sha2::Digest;
use tokio::net::TcpStream;

use super::{S2s, resolve};
use crate::c2s::XmlConn;
use crate::router::Router;

/// The dialback stream feature namespace.
pub const NS_FEATURE: &str = "urn:xmpp:features:dialback";

/// `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`.
pub fn feature() -> Element {
    Element::new("dialback", NS_FEATURE).with_child(Element::new("errors", NS_FEATURE))
}

/// The dialback key for a stream `id` from `originating` to `receiving` (XEP-0185).
pub fn key(secret: &[u8], receiving: &str, originating: &str, id: &str) -> String {
    let k = sha2::Sha256::digest(secret);
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&k) else { return String::new() };
    mac.update(format!("{receiving} {originating} {id}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two keys.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ask `originating`'s authoritative server whether `key` is the one it gave for stream
/// `id` to us (`receiving`): XEP-0220 §2.3, over a fresh TLS connection. `true` only on an
/// explicit `type='valid'`.
pub async fn verify(s2s: &Arc<S2s>, router: &Router, originating: &str, receiving: &str, id: &str, key: &str) -> bool {
    let targets = resolve::targets(originating, s2s.config.route_for(originating), &*s2s.resolver).await;
    for t in targets {
        let r = tokio::time::timeout(s2s.config.connect_timeout, verify_at(s2s, router, &t, originating, receiving, id, key)).await;
        match r {
            Ok(Some(v)) => return v,
            Ok(None) => continue,
            Err(_) => tracing::info!(domain = originating, "dialback verification timed out"),
        }
    }
    false
}

async fn verify_at(s2s: &Arc<S2s>, router: &Router, t: &super::Route, originating: &str, receiving: &str, id: &str, key: &str) -> Option<bool> {
    let limits = Limits { max_stanza_bytes: router.config.limits.max_stanza_bytes, ..Limits::default() };
    let timeout = router.config.limits.stanza_timeout;
    let mut tcp = TcpStream::connect((t.host.as_str(), t.port)).await.ok()?;
    if !t.direct_tls {
        let mut conn = XmlConn::new(tcp, limits.clone(), timeout, receiving).server_stream();
        conn.queue_header(Some(originating));
        conn.flush().await.ok()?;
        let feats = next_features(&mut conn).await?;
        feats.child("starttls", ns::TLS)?;
        conn.send(&Element::new("starttls", ns::TLS)).await.ok()?;
        match conn.next_event().await.ok()? {
            Event::Stanza(el) if el.is("proceed", ns::TLS) => {}
            _ => return None,
        }
        tcp = conn.into_inner().ok()?;
    }
    let name = rustls::pki_types::ServerName::try_from(originating.to_owned()).ok()?;
    let tls = s2s.tls.dialback_connector.connect(name, tcp).await.ok()?;
    let mut conn = XmlConn::new(tls, limits, timeout, receiving).server_stream();
    conn.queue_header(Some(originating));
    conn.flush().await.ok()?;
    next_features(&mut conn).await?;
    conn.send(
        &Element::new("verify", ns::DIALBACK)
            .with_attr("from", receiving)
            .with_attr("to", originating)
            .with_attr("id", id)
            .with_text(key),
    )
    .await
    .ok()?;
    loop {
        match conn.next_event().await.ok()? {
            Event::Stanza(el) if el.is("verify", ns::DIALBACK) && el.attr("id") == Some(id) => {
                let valid = el.attr("type") == Some("valid");
                conn.close(None).await;
                return Some(valid);
            }
            Event::Stanza(_) => continue,
            _ => return None,
        }
    }
}

async fn next_features<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(conn: &mut XmlConn<S>) -> Option<Element> {
    match conn.next_event().await.ok()? {
        Event::StreamStart(h) if h.default_ns == ns::SERVER => {}
        _ => return None,
    }
    match conn.next_event().await.ok()? {
        Event::Stanza(f) if f.is("features", ns::STREAM) => Some(f),
        _ => None,
    }
}

/// Answer a `db:verify` from a receiving server checking a key we gave (XEP-0220 §2.4).
pub fn answer_verify(secret: &[u8], el: &Element) -> Option<Element> {
    let (from, to, id) = (el.attr("from")?, el.attr("to")?, el.attr("id")?);
    // `from` is the receiving server asking, `to` is us (the originating server).
    let expected = key(secret, from, to, id);
    let ty = if same(&expected, el.text().trim()) { "valid" } else { "invalid" };
    Some(Element::new("verify", ns::DIALBACK).with_attr("from", to).with_attr("to", from).with_attr("id", id).with_attr("type", ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_bind_every_part() {
        let k = key(b"secret", "b.example", "a.example", "id1");
        assert_eq!(k.len(), 64);
        assert_eq!(k, key(b"secret", "b.example", "a.example", "id1"));
        assert_ne!(k, key(b"secret", "b.example", "a.example", "id2"));
        assert_ne!(k, key(b"secret", "a.example", "b.example", "id1"));
        assert_ne!(k, key(b"other", "b.example", "a.example", "id1"));
        assert!(same(&k, &k.clone()));
        assert!(!same(&k, "00"));
    }

    #[test]
    fn verify_answers() {
        let k = key(b"s", "b.example", "a.example", "x");
        let q = Element::new("verify", ns::DIALBACK)
            .with_attr("from", "b.example")
            .with_attr("to", "a.example")
            .with_attr("id", "x")
            .with_text(k);
        let a = answer_verify(b"s", &q).unwrap();
        assert_eq!(a.attr("type"), Some("valid"));
        assert_eq!(a.attr("to"), Some("b.example"));
        let bad = q.clone().with_text("0");
        assert_eq!(answer_verify(b"s", &bad).unwrap().attr("type"), Some("invalid"));
        assert!(answer_verify(b"s", &Element::new("verify", ns::DIALBACK)).is_none());
    }
}
