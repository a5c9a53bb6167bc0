//! Signed upload URLs. A PUT URL carries its expiry; both carry an HMAC-SHA-256 tag (over
//! the method, slot id, expiry and file name) made with a key derived from the server
//! secret, so URLs cannot be forged or altered, and PUT URLs stop working when they expire.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept in URLs (128 bits, as 32 hex digits).
const TAG_BYTES: usize = 16;

/// Makes and checks URL tags.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer whose key is derived from `server_secret` (never used directly, so the
    /// secret's other uses stay independent).
    pub fn new(server_secret: &[u8]) -> Signer {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(server_secret).unwrap_or_else(|_| {
            // HMAC accepts keys of any length; this cannot happen.
            <HmacSha256 as KeyInit>::new_from_slice(b"rampart").expect("HMAC takes any key length")
        });
        mac.update(b"rampart upload url key v1");
        Signer { key: mac.finalize().into_bytes().to_vec() }
    }

    fn mac(&self, method: &str, id: &str, expires: u64, name: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in [method.as_bytes(), id.as_bytes(), expires.to_string().as_bytes(), name.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The tag for `method` (`put` or `get`) on a slot; `expires` is 0 for GET URLs.
    pub fn sign(&self, method: &str, id: &str, expires: u64, name: &str) -> String {
        let tag = self.mac(method, id, expires, name).finalize().into_bytes();
        hex::encode(&tag[..TAG_BYTES])
    }

    /// Check a tag in constant time.
    pub fn verify(&self, method: &str, id: &str, expires: u64, name: &str, tag: &str) -> bool {
        let Ok(bytes) = hex::decode(tag) else { return false };
        if bytes.len() != TAG_BYTES {
            return false;
        }
        self.mac(method, id, expires, name).verify_truncated_left(&bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_bind_every_part() {
        let s = Signer::new(b"secret");
        let t = s.sign("put", "abc", 10, "a.png");
        assert_eq!(t.len(), 32);
        assert!(s.verify("put", "abc", 10, "a.png", &t));
        assert!(!s.verify("get", "abc", 10, "a.png", &t));
        assert!(!s.verify("put", "abd", 10, "a.png", &t));
        assert!(!s.verify("put", "abc", 11, "a.png", &t));
        assert!(!s.verify("put", "abc", 10, "b.png", &t));
        assert!(!s.verify("put", "abc", 10, "a.png", "zz"));
        assert!(!s.verify("put", "abc", 10, "a.png", &t[..30]));
        assert!(!Signer::new(b"other").verify("put", "abc", 10, "a.png", &t));
    }
}
