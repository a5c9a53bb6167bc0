//! Message syntax shared by the SCRAM client and server (RFC 5802 §7): attributes, saslnames,
//! nonces, GS2 headers, and the input size bound.

use crate::{MAX_MESSAGE_LEN, SaslError};

/// Shorthand for a [`SaslError::MalformedRequest`].
pub(crate) fn malformed(what: &str) -> SaslError {
    SaslError::MalformedRequest(what.to_owned())
}

/// Enforce [`MAX_MESSAGE_LEN`] and UTF-8.
pub(crate) fn bounded_utf8(input: &[u8]) -> Result<&str, SaslError> {
    if input.len() > MAX_MESSAGE_LEN {
        return Err(malformed("message too long"));
    }
    std::str::from_utf8(input).map_err(|_| malformed("message is not UTF-8"))
}

/// Decode a `saslname`: `=2C` → `,`, `=3D` → `=`. Any other `=`, a raw `,` or NUL is invalid.
pub(crate) fn decode_saslname(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("=2C") {
            out.push(',');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("=3D") {
            out.push('=');
            rest = after;
        } else {
            return Err(malformed("invalid character or escape in saslname"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Encode a `saslname` (inverse of [`decode_saslname`]).
pub(crate) fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// `printable` nonce: non-empty, `%x21-2B / %x2D-7E`.
pub(crate) fn valid_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Value of attribute `name` in `part` (`"r=abc"` → `"abc"`), or MalformedRequest.
pub(crate) fn attr<'a>(
    part: Option<&'a str>,
    name: char,
    what: &str,
) -> Result<&'a str, SaslError> {
    let part = part.ok_or_else(|| malformed(&format!("missing {what}")))?;
    let mut chars = part.chars();
    if chars.next() == Some(name) && chars.next() == Some('=') {
        Ok(&part[2..])
    } else {
        Err(malformed(&format!("expected {what}")))
    }
}

/// An optional trailing extension attribute: `ALPHA "=" 1*value-char`. `m=` never appears here
/// (it is only valid first, and is rejected there).
pub(crate) fn check_extension(part: &str) -> Result<(), SaslError> {
    let b = part.as_bytes();
    if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
        Ok(())
    } else {
        Err(malformed("invalid attribute"))
    }
}

/// The channel-binding flag of a GS2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CbFlag {
    /// `n`: client does not support channel binding.
    No,
    /// `y`: client supports it but thinks the server does not.
    ClientOnly,
    /// `p=<name>`: client uses channel binding of type `name`.
    Used(String),
}

/// A parsed SCRAM client-first message.
#[derive(Debug)]
pub(crate) struct ClientFirst<'a> {
    pub flag: CbFlag,
    pub authzid: Option<String>,
    /// The GS2 header verbatim, trailing comma included (what `c=` must echo).
    pub gs2_header: &'a str,
    /// `client-first-message-bare` verbatim.
    pub bare: &'a str,
    /// Decoded (not yet SASLprep'd) username.
    pub username: String,
    pub nonce: &'a str,
}

/// Parse `gs2-header client-first-message-bare`.
pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, SaslError> {
    let mut it = msg.splitn(3, ',');
    let flag_s = it.next().unwrap_or_default();
    let authz_s = it.next().ok_or_else(|| malformed("missing GS2 header"))?;
    let bare = it.next().ok_or_else(|| malformed("missing GS2 header"))?;
    let gs2_header = &msg[..flag_s.len() + authz_s.len() + 2];

    let flag = match flag_s {
        "n" => CbFlag::No,
        "y" => CbFlag::ClientOnly,
        _ => match flag_s.strip_prefix("p=") {
            Some(name)
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                CbFlag::Used(name.to_owned())
            }
            _ => return Err(malformed("invalid channel-binding flag")),
        },
    };
    let authzid = if authz_s.is_empty() {
        None
    } else {
        let raw = authz_s
            .strip_prefix("a=")
            .ok_or_else(|| malformed("invalid authzid"))?;
        let decoded = decode_saslname(raw)?;
        if decoded.is_empty() {
            return Err(malformed("empty authzid"));
        }
        Some(decoded)
    };

    let mut parts = bare.split(',');
    let first = parts.next();
    if first.is_some_and(|p| p.starts_with("m=")) {
        return Err(malformed("mandatory extensions are not supported"));
    }
    let username = decode_saslname(attr(first, 'n', "username")?)?;
    if username.is_empty() {
        return Err(malformed("empty username"));
    }
    let nonce = attr(parts.next(), 'r', "nonce")?;
    if !valid_nonce(nonce) {
        return Err(malformed("invalid nonce"));
    }
    for ext in parts {
        check_extension(ext)?;
    }
    Ok(ClientFirst {
        flag,
        authzid,
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// A parsed SCRAM client-final message.
#[derive(Debug)]
pub(crate) struct ClientFinal<'a> {
    /// `c=` value, still base64.
    pub channel_binding: &'a str,
    pub nonce: &'a str,
    /// `p=` value, still base64.
    pub proof: &'a str,
    /// `client-final-message-without-proof` verbatim.
    pub without_proof: &'a str,
}

/// Parse `c=...,r=...[,ext...],p=...`.
pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, SaslError> {
    let (without_proof, proof_part) = msg
        .rsplit_once(',')
        .ok_or_else(|| malformed("missing proof"))?;
    let proof = attr(Some(proof_part), 'p', "proof")?;
    let mut parts = without_proof.split(',');
    let channel_binding = attr(parts.next(), 'c', "channel binding")?;
    let nonce = attr(parts.next(), 'r', "nonce")?;
    for ext in parts {
        check_extension(ext)?;
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

/// A parsed SCRAM server-first message.
#[derive(Debug)]
pub(crate) struct ServerFirst<'a> {
    pub nonce: &'a str,
    /// Still base64.
    pub salt: &'a str,
    pub iterations: &'a str,
}

/// Parse `r=...,s=...,i=...[,ext...]`.
pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst<'_>, SaslError> {
    let mut parts = msg.split(',');
    let first = parts.next();
    if first.is_some_and(|p| p.starts_with("m=")) {
        return Err(malformed("mandatory extensions are not supported"));
    }
    let nonce = attr(first, 'r', "nonce")?;
    let salt = attr(parts.next(), 's', "salt")?;
    let iterations = attr(parts.next(), 'i', "iteration count")?;
    for ext in parts {
        check_extension(ext)?;
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}
