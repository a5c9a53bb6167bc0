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

//! Entry points: [`ServerExchange`] (one login attempt on the server), [`ClientExchange`]
//! (tests and the load generator), [`derive_credentials`] / [`new_credentials`] (account
//! provisioning).

mod client;
mod crypto;
mod server;
mod syntax;
#[cfg(test)]
mod tests;

pub use client::{ClientExchange, ScramKeyCache};
pub use crypto::{derive_credentials, new_credentials};
pub use server::{ServerExchange, Step};

/// PBKDF2 iteration count for new credentials (RFC 7677 §4 minimum for SCRAM-SHA-256) and for
/// the fake credentials presented for unknown users.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Largest client or server message accepted (bytes, after base64 decoding). Anything longer
/// fails with [`SaslError::MalformedRequest`].
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Largest iteration count a [`ClientExchange`] accepts from a server; protects the load
/// generator against a server asking for an absurd amount of PBKDF2 work.
pub const MAX_CLIENT_ITERATIONS: u32 = 1_000_000;

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

impl ScramHash {
    /// Length in bytes of the hash output (and thus of `StoredKey`, `ServerKey`, proofs).
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// IANA hash name as used in the mechanism name ("SHA-1", "SHA-256").
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
        }
    }
}

impl Mechanism {
    /// All mechanisms, strongest first (the order to advertise them in).
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The registered SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Parse a mechanism name (exact, case-sensitive match as registered).
    pub fn from_name(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether this is a channel-binding (`-PLUS`) mechanism.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }

    /// The SCRAM hash of this mechanism, `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
