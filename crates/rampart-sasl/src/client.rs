//! Client side of one SASL exchange (PLAIN, SCRAM(-PLUS)), for tests and the load generator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::crypto::{self, B64, Keys};
use crate::server::{CB_TYPE, auth_message};
use crate::syntax::{self, malformed};
use crate::{MAX_CLIENT_ITERATIONS, Mechanism, SaslError, ScramHash};

/// Random bytes in the client nonce (base64-encoded on the wire).
const CLIENT_NONCE_BYTES: usize = 18;

enum State {
    Initial,
    PlainSent,
    ScramSentFirst {
        gs2_header: String,
        client_first_bare: String,
        client_nonce: String,
    },
    ScramSentFinal {
        server_signature: Vec<u8>,
    },
    Done,
    Failed,
}

/// Most entries a [`ScramKeyCache`] holds; beyond it, it starts over.
const KEY_CACHE_LIMIT: usize = 65_536;

/// What a cached key was derived from: hash, password, salt, iteration count.
type KeySource = (ScramHash, String, Vec<u8>, u32);

/// SCRAM keys derived from passwords, kept between logins. RFC 5802 §5.1 lets a client cache
/// them, "as it is likely that the server is going to advertise the same salt value upon
/// reauthentication"; real clients do, and a load generator that did not would spend a
/// PBKDF2 (thousands of hash rounds) on every login, as much CPU as the server's side of it.
/// Shared by any number of [`ClientExchange`]s ([`ClientExchange::with_key_cache`]).
#[derive(Default)]
pub struct ScramKeyCache {
    keys: Mutex<HashMap<KeySource, Keys>>,
}

impl std::fmt::Debug for ScramKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeyCache").field("entries", &self.len()).finish()
    }
}

impl ScramKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeySource, Keys>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys for this password, salt and count: from the cache, or derived and kept.
    fn keys(&self, hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Result<Keys, SaslError> {
        let source = (hash, password.to_owned(), salt.to_vec(), iterations);
        if let Some(k) = self.lock().get(&source) {
            return Ok(k.clone());
        }
        // Derived outside the lock: other logins need not wait for this one's PBKDF2.
        let keys = crypto::derive_keys(hash, password, salt, iterations)?;
        let mut map = self.lock();
        if map.len() >= KEY_CACHE_LIMIT {
            map.clear();
        }
        map.insert(source, keys.clone());
        Ok(keys)
    }
}

/// Client side of one exchange.
///
/// SCRAM GS2 flag: a `-PLUS` mechanism sends `p=tls-exporter` (and needs `channel_binding`);
/// a non-PLUS mechanism sends `y` when `channel_binding` is given (client could bind, server
/// did not offer -PLUS) and `n` otherwise.
pub struct ClientExchange {
    mechanism: Mechanism,
    username: String,
    password: String,
    channel_binding: Option<Vec<u8>>,
    authzid: Option<String>,
    nonce: Option<String>,
    key_cache: Option<Arc<ScramKeyCache>>,
    state: State,
}

impl std::fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientExchange")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("authzid", &self.authzid)
            .finish_non_exhaustive()
    }
}

impl ClientExchange {
    pub fn new(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        channel_binding: Option<Vec<u8>>,
    ) -> Self {
        ClientExchange {
            mechanism,
            username: username.to_owned(),
            password: password.to_owned(),
            channel_binding,
            authzid: None,
            nonce: None,
            key_cache: None,
            state: State::Initial,
        }
    }

    /// Request an authorization identity (PLAIN authzid, SCRAM `a=`).
    pub fn with_authzid(mut self, authzid: &str) -> Self {
        self.authzid = Some(authzid.to_owned());
        self
    }

    /// Use a fixed SCRAM client nonce (test vectors, reproducible runs). The nonce must be
    /// printable ASCII without commas; a fixed nonce must never be reused against a real server.
    pub fn with_nonce(mut self, nonce: &str) -> Self {
        self.nonce = Some(nonce.to_owned());
        self
    }

    /// Take SCRAM keys from `cache`, and keep the ones derived here in it.
    pub fn with_key_cache(mut self, cache: Arc<ScramKeyCache>) -> Self {
        self.key_cache = Some(cache);
        self
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The initial response.
    pub fn initial(&mut self) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::Initial = state else {
            return Err(malformed("initial called twice"));
        };
        if self.mechanism.scram_hash().is_none() {
            let authzid = self.authzid.as_deref().unwrap_or("");
            if [authzid, &self.username, &self.password]
                .iter()
                .any(|s| s.contains('\0'))
            {
                return Err(malformed("PLAIN fields must not contain NUL"));
            }
            self.state = State::PlainSent;
            return Ok(format!("{authzid}\0{}\0{}", self.username, self.password).into_bytes());
        }

        let flag = if self.mechanism.is_plus() {
            if self.channel_binding.is_none() {
                return Err(malformed("-PLUS mechanism needs channel-binding data"));
            }
            format!("p={CB_TYPE}")
        } else if self.channel_binding.is_some() {
            "y".to_owned()
        } else {
            "n".to_owned()
        };
        let authz = match &self.authzid {
            Some(a) => format!("a={}", syntax::encode_saslname(a)),
            None => String::new(),
        };
        let gs2_header = format!("{flag},{authz},");
        let username = stringprep::saslprep(&self.username)
            .map_err(|_| malformed("username fails SASLprep"))?;
        let client_nonce = match &self.nonce {
            Some(n) if syntax::valid_nonce(n) => n.clone(),
            Some(_) => return Err(malformed("invalid client nonce")),
            None => B64.encode(crypto::random_bytes(CLIENT_NONCE_BYTES)),
        };
        let client_first_bare = format!(
            "n={},r={}",
            syntax::encode_saslname(&username),
            client_nonce
        );
        let msg = format!("{gs2_header}{client_first_bare}").into_bytes();
        self.state = State::ScramSentFirst {
            gs2_header,
            client_first_bare,
            client_nonce,
        };
        Ok(msg)
    }

    /// Answer the SCRAM server-first challenge with the client-final message.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::ScramSentFirst {
            gs2_header,
            client_first_bare,
            client_nonce,
        } = state
        else {
            return Err(malformed("respond called out of order"));
        };
        let hash = self
            .mechanism
            .scram_hash()
            .ok_or_else(|| malformed("not SCRAM"))?;
        let server_first = syntax::bounded_utf8(challenge)?;
        let sf = syntax::parse_server_first(server_first)?;
        if !syntax::valid_nonce(sf.nonce)
            || sf.nonce.len() <= client_nonce.len()
            || !sf.nonce.starts_with(client_nonce.as_str())
        {
            return Err(malformed("server nonce does not extend client nonce"));
        }
        let salt = B64.decode(sf.salt).map_err(|_| malformed("invalid salt"))?;
        if salt.is_empty() {
            return Err(malformed("empty salt"));
        }
        let iterations: u32 = sf
            .iterations
            .parse()
            .map_err(|_| malformed("invalid iteration count"))?;
        if iterations == 0 || iterations > MAX_CLIENT_ITERATIONS {
            return Err(malformed("iteration count out of range"));
        }
        let keys = match &self.key_cache {
            Some(cache) => cache.keys(hash, &self.password, &salt, iterations)?,
            None => crypto::derive_keys(hash, &self.password, &salt, iterations)?,
        };

        let mut cb_input = gs2_header.into_bytes();
        if let (true, Some(cb)) = (self.mechanism.is_plus(), &self.channel_binding) {
            cb_input.extend_from_slice(cb);
        }
        let without_proof = format!("c={},r={}", B64.encode(&cb_input), sf.nonce);
        let auth = auth_message(&client_first_bare, server_first, &without_proof);
        let client_signature = hash.hmac(&keys.stored_key, &[auth.as_bytes()])?;
        let proof = crypto::xor(&keys.client_key, &client_signature);
        let server_signature = hash.hmac(&keys.server_key, &[auth.as_bytes()])?;
        self.state = State::ScramSentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Check the `<success/>` additional data (SCRAM: the server signature; PLAIN: empty).
    pub fn verify_success(&mut self, additional_data: &[u8]) -> Result<(), SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        match state {
            State::PlainSent if additional_data.is_empty() => {}
            State::PlainSent => return Err(malformed("unexpected additional data for PLAIN")),
            State::ScramSentFinal { server_signature } => {
                let msg = syntax::bounded_utf8(additional_data)?;
                if msg.starts_with("e=") {
                    return Err(SaslError::NotAuthorized);
                }
                let first = msg.split(',').next();
                let v = syntax::attr(first, 'v', "verifier")?;
                let v = B64
                    .decode(v)
                    .map_err(|_| malformed("invalid base64 in v="))?;
                if !bool::from(v.ct_eq(&server_signature)) {
                    return Err(SaslError::NotAuthorized);
                }
            }
            _ => return Err(malformed("verify_success called out of order")),
        }
        self.state = State::Done;
        Ok(())
    }
}
