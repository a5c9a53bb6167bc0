//! Server-side SASL mechanisms for XMPP logins: SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS)
//! (RFC 5802, RFC 7677, channel binding `tls-exporter` per RFC 9266) and PLAIN (RFC 4616).
//!
//! Pure state machines: bytes in (already base64-decoded by the caller), bytes out. No I/O, no
//! storage: the caller looks up [`ScramCredentials`] for the username the mechanism reports
//! and hands them back. Passwords are never stored; only salted SCRAM keys are.
//!
//! Unknown users are indistinguishable from wrong passwords: pass `None` as credentials and
//! the mechanism answers with a plausible salt (derived from a server secret) and fails at the
//! end exactly as for a wrong password.

/// Hash function of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

/// What the store keeps for one account and one hash: RFC 5802 §3 `StoredKey` and `ServerKey`
/// with the salt and iteration count that derived them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredentials {
    pub hash: ScramHash,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// A mechanism offered in `<mechanisms/>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha256,
    ScramSha1Plus,
    ScramSha1,
    Plain,
}

/// Failure of an exchange, mapped to RFC 6120 §6.5 SASL error conditions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Wrong password, unknown user, bad proof, channel-binding mismatch.
    #[error("not authorized")]
    NotAuthorized,
    /// Syntactically wrong client message.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// The authorization identity differs from the authentication identity.
    #[error("invalid authzid")]
    InvalidAuthzid,
    /// Unknown or unoffered mechanism.
    #[error("invalid mechanism")]
    InvalidMechanism,
}

impl SaslError {
    /// The RFC 6120 §6.5 condition element name.
    pub fn condition(&self) -> &'static str {
        match self {
            SaslError::NotAuthorized => "not-authorized",
            SaslError::MalformedRequest(_) => "malformed-request",
            SaslError::InvalidAuthzid => "invalid-authzid",
            SaslError::InvalidMechanism => "invalid-mechanism",
        }
    }
}
