//! Server side of one SASL exchange: PLAIN and SCRAM(-PLUS) as a state machine.

use base64::Engine as _;
use subtle::{Choice, ConstantTimeEq};

use crate::crypto::{self, B64};
use crate::syntax::{self, CbFlag, malformed};
use crate::{DEFAULT_ITERATIONS, Mechanism, SaslError, ScramCredentials, ScramHash};

/// The only channel-binding type supported (RFC 9266).
pub(crate) const CB_TYPE: &str = "tls-exporter";

/// Random bytes in the server's nonce part (base64-encoded on the wire).
const SERVER_NONCE_BYTES: usize = 24;

/// What the caller must do next in a [`ServerExchange`].
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// The mechanism learned who is authenticating; call
    /// [`ServerExchange::provide_credentials`] next.
    NeedCredentials { username: String },
    /// Send this challenge (raw bytes; the caller base64-encodes).
    Challenge(Vec<u8>),
    /// Authenticated. `additional_data` goes into `<success/>` (SCRAM server-final `v=...`,
    /// empty for PLAIN). `authzid` is the requested authorization identity, if any: the
    /// caller decides whether `username` may act as it (else [`SaslError::InvalidAuthzid`]).
    Success {
        username: String,
        authzid: Option<String>,
        additional_data: Vec<u8>,
    },
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::NeedCredentials { username } => f
                .debug_struct("NeedCredentials")
                .field("username", username)
                .finish(),
            Step::Challenge(c) => f
                .debug_tuple("Challenge")
                .field(&String::from_utf8_lossy(c))
                .finish(),
            Step::Success {
                username,
                authzid,
                additional_data,
            } => f
                .debug_struct("Success")
                .field("username", username)
                .field("authzid", authzid)
                .field("additional_data", &String::from_utf8_lossy(additional_data))
                .finish(),
        }
    }
}

/// Data kept from a SCRAM client-first message.
struct ScramFirst {
    hash: ScramHash,
    gs2_header: String,
    cb_used: bool,
    authzid: Option<String>,
    username: String,
    client_first_bare: String,
    client_nonce: String,
}

/// Data kept after sending the SCRAM server-first message.
struct ScramPending {
    first: ScramFirst,
    server_first: String,
    combined_nonce: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    /// False for unknown users (keys are random and the exchange must fail).
    known: bool,
}

enum State {
    /// Waiting for the initial response.
    Initial {
        empty_challenge_sent: bool,
    },
    PlainNeedCredentials {
        authzid: Option<String>,
        authcid: String,
        password: String,
    },
    ScramNeedCredentials(ScramFirst),
    ScramNeedFinal(Box<ScramPending>),
    /// Succeeded; nothing more to do.
    Done,
    /// Failed (or misused); every further call fails.
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Initial { .. } => "Initial",
            State::PlainNeedCredentials { .. } => "PlainNeedCredentials",
            State::ScramNeedCredentials(_) => "ScramNeedCredentials",
            State::ScramNeedFinal(_) => "ScramNeedFinal",
            State::Done => "Done",
            State::Failed => "Failed",
        }
    }
}

/// One server-side authentication exchange.
///
/// Drive it with [`step`](Self::step) for every client message and answer
/// [`Step::NeedCredentials`] with [`provide_credentials`](Self::provide_credentials). Any error
/// is final: the exchange refuses all further calls with [`SaslError::MalformedRequest`].
pub struct ServerExchange {
    mechanism: Mechanism,
    channel_binding: Option<Vec<u8>>,
    plus_offered: bool,
    server_secret: Vec<u8>,
    state: State,
    #[cfg(test)]
    fixed_nonce: Option<String>,
}

impl std::fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerExchange")
            .field("mechanism", &self.mechanism)
            .field("has_channel_binding", &self.channel_binding.is_some())
            .field("plus_offered", &self.plus_offered)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl ServerExchange {
    /// `channel_binding`: tls-exporter data (RFC 9266) of this connection when available
    /// (TLS 1.3), else None.
    /// `plus_offered`: whether -PLUS mechanisms were advertised on this connection (affects
    /// the "y" gs2 flag check).
    /// `server_secret`: used to derive deterministic fake salts for unknown users.
    pub fn new(
        mechanism: Mechanism,
        channel_binding: Option<Vec<u8>>,
        plus_offered: bool,
        server_secret: &[u8],
    ) -> Self {
        ServerExchange {
            mechanism,
            channel_binding,
            plus_offered,
            server_secret: server_secret.to_vec(),
            state: State::Initial {
                empty_challenge_sent: false,
            },
            #[cfg(test)]
            fixed_nonce: None,
        }
    }

    /// Test hook: use `nonce` as the server nonce part instead of a random one.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mut self, nonce: &str) -> Self {
        self.fixed_nonce = Some(nonce.to_owned());
        self
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the exchange has succeeded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feed a client message (initial response or response), already base64-decoded.
    ///
    /// An empty message while waiting for the initial response (the client sent `<auth/>`
    /// without one) is answered once with an empty challenge.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (next, step) = self.step_inner(state, input)?;
        self.state = next;
        Ok(step)
    }

    /// Answer [`Step::NeedCredentials`]: the account's stored credentials (all hashes), or
    /// `None` if no such account.
    pub fn provide_credentials(
        &mut self,
        creds: Option<&[ScramCredentials]>,
    ) -> Result<Step, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (next, step) = match state {
            State::PlainNeedCredentials {
                authzid,
                authcid,
                password,
            } => self.plain_verify(authzid, authcid, &password, creds)?,
            State::ScramNeedCredentials(first) => self.scram_server_first(first, creds)?,
            other => {
                return Err(malformed(&format!(
                    "provide_credentials called in state {}",
                    other.name()
                )));
            }
        };
        self.state = next;
        Ok(step)
    }

    fn step_inner(&self, state: State, input: &[u8]) -> Result<(State, Step), SaslError> {
        match state {
            State::Initial {
                empty_challenge_sent: false,
            } if input.is_empty() => Ok((
                State::Initial {
                    empty_challenge_sent: true,
                },
                Step::Challenge(Vec::new()),
            )),
            State::Initial { .. } => match self.mechanism.scram_hash() {
                None => self.plain_initial(input),
                Some(hash) => self.scram_client_first(hash, input),
            },
            State::ScramNeedFinal(pending) => self.scram_client_final(*pending, input),
            other => Err(malformed(&format!("step called in state {}", other.name()))),
        }
    }

    // ---- PLAIN (RFC 4616) ----

    fn plain_initial(&self, input: &[u8]) -> Result<(State, Step), SaslError> {
        let msg = syntax::bounded_utf8(input)?;
        let mut parts = msg.split('\0');
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "PLAIN message must be authzid NUL authcid NUL passwd",
            ));
        };
        if authcid.is_empty() {
            return Err(malformed("empty authcid"));
        }
        let authcid = stringprep::saslprep(authcid)
            .map_err(|_| malformed("authcid fails SASLprep"))?
            .into_owned();
        if authcid.is_empty() {
            return Err(malformed("empty authcid"));
        }
        let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
        Ok((
            State::PlainNeedCredentials {
                authzid,
                authcid: authcid.clone(),
                password: password.to_owned(),
            },
            Step::NeedCredentials { username: authcid },
        ))
    }

    fn plain_verify(
        &self,
        authzid: Option<String>,
        authcid: String,
        password: &str,
        creds: Option<&[ScramCredentials]>,
    ) -> Result<(State, Step), SaslError> {
        let usable = |h: ScramHash| {
            creds.and_then(|cs| cs.iter().find(|c| c.hash == h && usable_credentials(c)))
        };
        let found = usable(ScramHash::Sha256).or_else(|| usable(ScramHash::Sha1));
        let Some(cred) = found else {
            // Unknown user: spend the same PBKDF2 work as for a real one, then fail.
            let salt = crypto::fake_salt(&self.server_secret, ScramHash::Sha256, &authcid)?;
            let _ = crypto::derive_keys(ScramHash::Sha256, password, &salt, DEFAULT_ITERATIONS);
            return Err(SaslError::NotAuthorized);
        };
        if password.is_empty() {
            return Err(SaslError::NotAuthorized);
        }
        let keys = crypto::derive_keys(cred.hash, password, &cred.salt, cred.iterations)
            .map_err(|_| SaslError::NotAuthorized)?;
        if bool::from(keys.stored_key.ct_eq(&cred.stored_key)) {
            Ok((
                State::Done,
                Step::Success {
                    username: authcid,
                    authzid,
                    additional_data: Vec::new(),
                },
            ))
        } else {
            Err(SaslError::NotAuthorized)
        }
    }

    // ---- SCRAM (RFC 5802 / 7677 / 9266) ----

    fn scram_client_first(
        &self,
        hash: ScramHash,
        input: &[u8],
    ) -> Result<(State, Step), SaslError> {
        let msg = syntax::bounded_utf8(input)?;
        let cf = syntax::parse_client_first(msg)?;
        let plus = self.mechanism.is_plus();
        let cb_used = match &cf.flag {
            CbFlag::Used(name) => {
                if !plus || name != CB_TYPE || self.channel_binding.is_none() {
                    return Err(SaslError::NotAuthorized);
                }
                true
            }
            // A -PLUS mechanism requires channel binding.
            _ if plus => return Err(SaslError::NotAuthorized),
            // The client could bind but believes we cannot although we offered -PLUS:
            // a downgrade (RFC 5802 §6).
            CbFlag::ClientOnly if self.plus_offered => return Err(SaslError::NotAuthorized),
            CbFlag::ClientOnly | CbFlag::No => false,
        };
        let username = stringprep::saslprep(&cf.username)
            .map_err(|_| malformed("username fails SASLprep"))?
            .into_owned();
        if username.is_empty() {
            return Err(malformed("empty username"));
        }
        let first = ScramFirst {
            hash,
            gs2_header: cf.gs2_header.to_owned(),
            cb_used,
            authzid: cf.authzid,
            username: username.clone(),
            client_first_bare: cf.bare.to_owned(),
            client_nonce: cf.nonce.to_owned(),
        };
        Ok((
            State::ScramNeedCredentials(first),
            Step::NeedCredentials { username },
        ))
    }

    fn server_nonce(&self) -> String {
        #[cfg(test)]
        if let Some(n) = &self.fixed_nonce {
            return n.clone();
        }
        B64.encode(crypto::random_bytes(SERVER_NONCE_BYTES))
    }

    fn scram_server_first(
        &self,
        first: ScramFirst,
        creds: Option<&[ScramCredentials]>,
    ) -> Result<(State, Step), SaslError> {
        let hash = first.hash;
        let found =
            creds.and_then(|cs| cs.iter().find(|c| c.hash == hash && usable_credentials(c)));
        let (salt, iterations, stored_key, server_key, known) = match found {
            Some(c) => (
                c.salt.clone(),
                c.iterations,
                c.stored_key.clone(),
                c.server_key.clone(),
                true,
            ),
            None => {
                // Unknown user (or no credentials for this hash): a plausible, stable salt and
                // random keys; the proof check below then fails like a wrong password.
                let salt = crypto::fake_salt(&self.server_secret, hash, &first.username)?;
                let len = hash.output_len();
                (
                    salt,
                    DEFAULT_ITERATIONS,
                    crypto::random_bytes(len),
                    crypto::random_bytes(len),
                    false,
                )
            }
        };
        let combined_nonce = format!("{}{}", first.client_nonce, self.server_nonce());
        let server_first = format!(
            "r={},s={},i={}",
            combined_nonce,
            B64.encode(&salt),
            iterations
        );
        let challenge = server_first.clone().into_bytes();
        let pending = ScramPending {
            first,
            server_first,
            combined_nonce,
            stored_key,
            server_key,
            known,
        };
        Ok((
            State::ScramNeedFinal(Box::new(pending)),
            Step::Challenge(challenge),
        ))
    }

    fn scram_client_final(
        &self,
        p: ScramPending,
        input: &[u8],
    ) -> Result<(State, Step), SaslError> {
        let msg = syntax::bounded_utf8(input)?;
        let cf = syntax::parse_client_final(msg)?;
        if cf.nonce != p.combined_nonce {
            return Err(malformed("nonce mismatch"));
        }
        let cb_input = B64
            .decode(cf.channel_binding)
            .map_err(|_| malformed("invalid base64 in c="))?;
        let proof = B64
            .decode(cf.proof)
            .map_err(|_| malformed("invalid base64 in p="))?;
        let hash = p.first.hash;
        if proof.len() != hash.output_len() {
            return Err(malformed("proof has wrong length"));
        }

        let mut expected_cb = p.first.gs2_header.as_bytes().to_vec();
        if p.first.cb_used {
            match &self.channel_binding {
                Some(data) => expected_cb.extend_from_slice(data),
                None => return Err(SaslError::NotAuthorized),
            }
        }
        let cb_ok = cb_input.ct_eq(&expected_cb);

        let auth_message = auth_message(
            &p.first.client_first_bare,
            &p.server_first,
            cf.without_proof,
        );
        let client_signature = hash.hmac(&p.stored_key, &[auth_message.as_bytes()])?;
        let client_key = crypto::xor(&proof, &client_signature);
        let proof_ok = hash.digest(&client_key).ct_eq(&p.stored_key);

        if !bool::from(cb_ok & proof_ok & Choice::from(u8::from(p.known))) {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = hash.hmac(&p.server_key, &[auth_message.as_bytes()])?;
        let additional_data = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok((
            State::Done,
            Step::Success {
                username: p.first.username,
                authzid: p.first.authzid,
                additional_data,
            },
        ))
    }
}

/// `AuthMessage = client-first-message-bare "," server-first-message "," client-final-message-without-proof`.
pub(crate) fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    client_final_wo_proof: &str,
) -> String {
    format!("{client_first_bare},{server_first},{client_final_wo_proof}")
}

/// Stored credentials that are structurally usable (right key lengths, positive iterations).
fn usable_credentials(c: &ScramCredentials) -> bool {
    c.iterations > 0
        && c.stored_key.len() == c.hash.output_len()
        && c.server_key.len() == c.hash.output_len()
}
