//! Tests: RFC test vectors, client↔server round trips, failure shapes and malformed input.

use base64::Engine as _;
use rand::{Rng, RngCore, SeedableRng};

use crate::crypto::B64;
use crate::*;

const SECRET: &[u8] = b"server secret for tests";
const CB: &[u8] = b"tls-exporter-data-of-this-connection-32b";

fn creds(password: &str) -> Vec<ScramCredentials> {
    new_credentials(password).expect("valid password")
}

fn unwrap_need(step: Step) -> String {
    match step {
        Step::NeedCredentials { username } => username,
        other => panic!("expected NeedCredentials, got {other:?}"),
    }
}

fn unwrap_challenge(step: Step) -> Vec<u8> {
    match step {
        Step::Challenge(c) => c,
        other => panic!("expected Challenge, got {other:?}"),
    }
}

/// Drive a full exchange. Returns the server's success step (after the client verified it).
fn run(
    client: &mut ClientExchange,
    server: &mut ServerExchange,
    stored: Option<&[ScramCredentials]>,
) -> Result<Step, SaslError> {
    let first = client.initial()?;
    unwrap_need(server.step(&first)?);
    let step = server.provide_credentials(stored)?;
    let step = match step {
        Step::Challenge(c) => {
            let fin = client.respond(&c)?;
            server.step(&fin)?
        }
        s => s,
    };
    match &step {
        Step::Success {
            additional_data, ..
        } => client.verify_success(additional_data)?,
        other => panic!("expected Success, got {other:?}"),
    }
    Ok(step)
}

fn pair(
    mech: Mechanism,
    user: &str,
    password: &str,
    client_cb: Option<&[u8]>,
    server_cb: Option<&[u8]>,
    plus_offered: bool,
) -> (ClientExchange, ServerExchange) {
    (
        ClientExchange::new(mech, user, password, client_cb.map(<[u8]>::to_vec)),
        ServerExchange::new(mech, server_cb.map(<[u8]>::to_vec), plus_offered, SECRET),
    )
}

/// Server in SCRAM mechanism `mech` that has processed `client_first` and sent server-first.
fn server_after_first(
    mech: Mechanism,
    cb: Option<&[u8]>,
    client_first: &[u8],
    stored: Option<&[ScramCredentials]>,
) -> (ServerExchange, Vec<u8>) {
    let mut s = ServerExchange::new(mech, cb.map(<[u8]>::to_vec), cb.is_some(), SECRET);
    unwrap_need(s.step(client_first).expect("client-first accepted"));
    let c = unwrap_challenge(s.provide_credentials(stored).expect("server-first"));
    (s, c)
}

fn is_malformed(r: Result<Step, SaslError>) -> bool {
    matches!(r, Err(SaslError::MalformedRequest(_)))
}

// ---------------------------------------------------------------------------------------------
// Mechanism names

#[test]
fn mechanism_names_round_trip() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
        assert_eq!(m.is_plus(), m.name().ends_with("-PLUS"));
    }
    assert_eq!(Mechanism::ScramSha256Plus.name(), "SCRAM-SHA-256-PLUS");
    assert_eq!(Mechanism::Plain.name(), "PLAIN");
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    assert_eq!(Mechanism::ScramSha1.scram_hash(), Some(ScramHash::Sha1));
    assert_eq!(Mechanism::Plain.scram_hash(), None);
}

#[test]
fn new_credentials_shape() {
    let cs = creds("pencil");
    assert_eq!(cs.len(), 2);
    let hashes: Vec<_> = cs.iter().map(|c| c.hash).collect();
    assert!(hashes.contains(&ScramHash::Sha1) && hashes.contains(&ScramHash::Sha256));
    for c in &cs {
        assert_eq!(c.salt.len(), 16);
        assert_eq!(c.iterations, DEFAULT_ITERATIONS);
        assert_eq!(c.stored_key.len(), c.hash.output_len());
        assert_eq!(c.server_key.len(), c.hash.output_len());
    }
    assert_ne!(cs[0].salt, cs[1].salt);
    assert!(derive_credentials(ScramHash::Sha1, "x", b"salt", 0).is_err());
    assert!(new_credentials("bad\u{0007}password").is_err());
}

// ---------------------------------------------------------------------------------------------
// RFC test vectors

#[allow(clippy::too_many_arguments)]
fn rfc_vector(
    mech: Mechanism,
    client_nonce: &str,
    server_nonce: &str,
    salt_b64: &str,
    client_first: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let hash = mech.scram_hash().expect("SCRAM");
    let salt = B64.decode(salt_b64).expect("salt");
    let stored = vec![derive_credentials(hash, "pencil", &salt, 4096).expect("derive")];

    let mut client = ClientExchange::new(mech, "user", "pencil", None).with_nonce(client_nonce);
    let mut server = ServerExchange::new(mech, None, false, SECRET).with_server_nonce(server_nonce);

    let cf = client.initial().expect("initial");
    assert_eq!(String::from_utf8_lossy(&cf), client_first);
    assert_eq!(unwrap_need(server.step(&cf).expect("step")), "user");
    let sf = unwrap_challenge(server.provide_credentials(Some(&stored)).expect("creds"));
    assert_eq!(String::from_utf8_lossy(&sf), server_first);
    let cfin = client.respond(&sf).expect("respond");
    assert_eq!(String::from_utf8_lossy(&cfin), client_final);
    match server.step(&cfin).expect("final") {
        Step::Success {
            username,
            authzid,
            additional_data,
        } => {
            assert_eq!(username, "user");
            assert_eq!(authzid, None);
            assert_eq!(String::from_utf8_lossy(&additional_data), server_final);
            client
                .verify_success(&additional_data)
                .expect("server signature");
        }
        other => panic!("{other:?}"),
    }
    assert!(server.is_done());
}

#[test]
fn rfc5802_sha1_vector() {
    rfc_vector(
        Mechanism::ScramSha1,
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
}

#[test]
fn rfc7677_sha256_vector() {
    rfc_vector(
        Mechanism::ScramSha256,
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

/// A client with a key cache sends the same proof as one without, derives the keys once for
/// the same salt and count, and never answers one password with another's keys.
#[test]
fn key_cache_gives_the_same_proof_and_derives_once() {
    let (mech, cn, sn) = (Mechanism::ScramSha256, "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
    let stored = vec![derive_credentials(ScramHash::Sha256, "pencil", &salt, 4096).expect("derive")];
    let cache = std::sync::Arc::new(ScramKeyCache::new());
    let login = |password: &str, cache: Option<&std::sync::Arc<ScramKeyCache>>| {
        let mut client = ClientExchange::new(mech, "user", password, None).with_nonce(cn);
        if let Some(c) = cache {
            client = client.with_key_cache(c.clone());
        }
        let mut server = ServerExchange::new(mech, None, false, SECRET).with_server_nonce(sn);
        let cf = client.initial().expect("initial");
        unwrap_need(server.step(&cf).expect("step"));
        let sf = unwrap_challenge(server.provide_credentials(Some(&stored)).expect("creds"));
        let fin = client.respond(&sf).expect("respond");
        (fin.clone(), server.step(&fin))
    };
    let (plain, _) = login("pencil", None);
    for _ in 0..2 {
        let (fin, step) = login("pencil", Some(&cache));
        assert_eq!(fin, plain);
        assert!(matches!(step, Ok(Step::Success { .. })));
    }
    assert_eq!(cache.len(), 1);
    let (_, step) = login("not pencil", Some(&cache));
    assert!(matches!(step, Err(SaslError::NotAuthorized)), "{step:?}");
    assert_eq!(cache.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_all_mechanisms() {
    let stored = creds("correct horse");
    for mech in Mechanism::ALL {
        let cb = mech.is_plus().then_some(CB);
        let (mut c, mut s) = pair(mech, "juliet", "correct horse", cb, Some(CB), true);
        match run(&mut c, &mut s, Some(&stored)) {
            Ok(Step::Success {
                username,
                authzid,
                additional_data,
            }) => {
                assert_eq!(username, "juliet", "{mech}");
                assert_eq!(authzid, None);
                assert_eq!(additional_data.is_empty(), mech == Mechanism::Plain);
            }
            other => panic!("{mech}: {other:?}"),
        }
        assert_eq!(s.mechanism(), mech);
    }
}

#[test]
fn round_trip_with_only_one_hash_stored() {
    // PLAIN falls back to SHA-1 credentials when no SHA-256 ones exist.
    let sha1_only: Vec<_> = creds("pw")
        .into_iter()
        .filter(|c| c.hash == ScramHash::Sha1)
        .collect();
    let (mut c, mut s) = pair(Mechanism::Plain, "romeo", "pw", None, None, false);
    assert!(run(&mut c, &mut s, Some(&sha1_only)).is_ok());
    // SCRAM-SHA-256 with only SHA-1 credentials fails like an unknown user.
    let (mut c, mut s) = pair(Mechanism::ScramSha256, "romeo", "pw", None, None, false);
    assert_eq!(
        run(&mut c, &mut s, Some(&sha1_only)),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn wrong_password_all_mechanisms() {
    let stored = creds("right");
    for mech in Mechanism::ALL {
        let cb = mech.is_plus().then_some(CB);
        let (mut c, mut s) = pair(mech, "juliet", "wrong", cb, Some(CB), true);
        assert_eq!(
            run(&mut c, &mut s, Some(&stored)),
            Err(SaslError::NotAuthorized),
            "{mech}"
        );
        // The exchange is dead afterwards.
        assert!(is_malformed(s.step(b"anything")));
    }
}

#[test]
fn plain_empty_password_not_authorized() {
    let stored = creds("right");
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    unwrap_need(s.step(b"\0juliet\0").expect("step"));
    assert_eq!(
        s.provide_credentials(Some(&stored)),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn unknown_user_same_shape_as_wrong_password() {
    for mech in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
        let salt_of = |user: &str, stored: Option<&[ScramCredentials]>| {
            let first = format!("n,,n={user},r=abcdefghijkl");
            let (_, sf) = server_after_first(mech, None, first.as_bytes(), stored);
            let sf = String::from_utf8(sf).expect("utf8");
            let parts: Vec<&str> = sf.split(',').collect();
            assert_eq!(parts.len(), 3, "{sf}");
            assert!(parts[0].starts_with("r=abcdefghijkl"));
            (
                B64.decode(&parts[1][2..]).expect("salt"),
                parts[2].to_owned(),
            )
        };
        let (salt1, iters1) = salt_of("nobody", None);
        let (salt2, iters2) = salt_of("nobody", None);
        let (salt3, _) = salt_of("somebody-else", None);
        let real = creds("pw");
        let (real_salt, real_iters) = salt_of("juliet", Some(&real));
        assert_eq!(salt1, salt2, "fake salt must be stable per username");
        assert_ne!(salt1, salt3, "fake salt must differ per username");
        assert_eq!(salt1.len(), real_salt.len());
        assert_eq!(iters1, iters2);
        assert_eq!(iters1, real_iters);
        assert_eq!(iters1, format!("i={DEFAULT_ITERATIONS}"));

        // Full exchange: unknown user fails exactly like a wrong password.
        let (mut c, mut s) = pair(mech, "nobody", "pw", None, None, false);
        assert_eq!(run(&mut c, &mut s, None), Err(SaslError::NotAuthorized));
        let (mut c, mut s) = pair(mech, "juliet", "wrong", None, None, false);
        assert_eq!(
            run(&mut c, &mut s, Some(&real)),
            Err(SaslError::NotAuthorized)
        );
        // Even the right password for a missing account (empty credential list) fails.
        let (mut c, mut s) = pair(mech, "nobody", "pw", None, None, false);
        assert_eq!(
            run(&mut c, &mut s, Some(&[])),
            Err(SaslError::NotAuthorized)
        );
    }
    // Fake salts differ between hashes, like real (independently random) salts do.
    let salt = |mech| {
        let (_, sf) = server_after_first(mech, None, b"n,,n=nobody,r=abc", None);
        String::from_utf8(sf)
            .expect("utf8")
            .split(',')
            .nth(1)
            .map(str::to_owned)
    };
    assert_ne!(salt(Mechanism::ScramSha1), salt(Mechanism::ScramSha256));

    let (mut c, mut s) = pair(Mechanism::Plain, "nobody", "pw", None, None, false);
    assert_eq!(run(&mut c, &mut s, None), Err(SaslError::NotAuthorized));
}

// ---------------------------------------------------------------------------------------------
// Channel binding

#[test]
fn channel_binding_mismatch() {
    let stored = creds("pw");
    for mech in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
        let (mut c, mut s) = pair(mech, "juliet", "pw", Some(b"client view"), Some(CB), true);
        assert_eq!(
            run(&mut c, &mut s, Some(&stored)),
            Err(SaslError::NotAuthorized),
            "{mech}"
        );
    }
}

#[test]
fn c_attribute_must_echo_gs2_header() {
    // A non-PLUS client that claims "n" but sends c= for "y" is rejected.
    let stored = creds("pw");
    let (mut s, sf) = server_after_first(
        Mechanism::ScramSha256,
        None,
        b"n,,n=juliet,r=abc",
        Some(&stored),
    );
    let sf = String::from_utf8(sf).expect("utf8");
    let nonce = &sf.split(',').next().expect("r")[2..];
    let fin = format!(
        "c={},r={nonce},p={}",
        B64.encode("y,,"),
        B64.encode([0u8; 32])
    );
    assert_eq!(s.step(fin.as_bytes()), Err(SaslError::NotAuthorized));
}

#[test]
fn y_flag_downgrade_rejected_when_plus_offered() {
    let stored = creds("pw");
    // Client supports CB (sends "y") but the server did advertise -PLUS: downgrade attack.
    let (mut c, mut s) = pair(
        Mechanism::ScramSha256,
        "juliet",
        "pw",
        Some(CB),
        Some(CB),
        true,
    );
    assert_eq!(
        run(&mut c, &mut s, Some(&stored)),
        Err(SaslError::NotAuthorized)
    );
    let mut s = ServerExchange::new(Mechanism::ScramSha1, Some(CB.to_vec()), true, SECRET);
    assert_eq!(s.step(b"y,,n=juliet,r=abc"), Err(SaslError::NotAuthorized));
}

#[test]
fn y_flag_accepted_when_plus_not_offered() {
    let stored = creds("pw");
    let (mut c, mut s) = pair(
        Mechanism::ScramSha256,
        "juliet",
        "pw",
        Some(CB),
        None,
        false,
    );
    assert!(run(&mut c, &mut s, Some(&stored)).is_ok());
    let first = c_first(Mechanism::ScramSha1, Some(CB));
    assert!(first.starts_with(b"y,,"));
}

fn c_first(mech: Mechanism, cb: Option<&[u8]>) -> Vec<u8> {
    ClientExchange::new(mech, "u", "p", cb.map(<[u8]>::to_vec))
        .initial()
        .expect("initial")
}

#[test]
fn plus_without_channel_binding_data() {
    // Server has no tls-exporter data (e.g. TLS 1.2) but client uses p=tls-exporter.
    let mut s = ServerExchange::new(Mechanism::ScramSha256Plus, None, false, SECRET);
    assert_eq!(
        s.step(b"p=tls-exporter,,n=juliet,r=abc"),
        Err(SaslError::NotAuthorized)
    );
    // Client cannot start a -PLUS exchange without data either.
    let mut c = ClientExchange::new(Mechanism::ScramSha256Plus, "juliet", "pw", None);
    assert!(matches!(c.initial(), Err(SaslError::MalformedRequest(_))));
}

#[test]
fn plus_mechanism_flag_rules() {
    let plus = |msg: &[u8]| {
        ServerExchange::new(Mechanism::ScramSha256Plus, Some(CB.to_vec()), true, SECRET).step(msg)
    };
    // -PLUS with "n" or "y": not authorized.
    assert_eq!(plus(b"n,,n=juliet,r=abc"), Err(SaslError::NotAuthorized));
    assert_eq!(plus(b"y,,n=juliet,r=abc"), Err(SaslError::NotAuthorized));
    // Unsupported channel-binding types.
    assert_eq!(
        plus(b"p=tls-unique,,n=juliet,r=abc"),
        Err(SaslError::NotAuthorized)
    );
    assert_eq!(
        plus(b"p=tls-server-end-point,,n=juliet,r=abc"),
        Err(SaslError::NotAuthorized)
    );
    assert!(matches!(
        plus(b"p=tls-exporter,,n=juliet,r=abc"),
        Ok(Step::NeedCredentials { .. })
    ));
    // Syntactically invalid cb-name.
    assert!(is_malformed(plus(b"p=tls_exporter!,,n=juliet,r=abc")));
    assert!(is_malformed(plus(b"p=,,n=juliet,r=abc")));
    // "p" with a non-PLUS mechanism.
    let mut s = ServerExchange::new(Mechanism::ScramSha256, Some(CB.to_vec()), true, SECRET);
    assert_eq!(
        s.step(b"p=tls-exporter,,n=juliet,r=abc"),
        Err(SaslError::NotAuthorized)
    );
}

// ---------------------------------------------------------------------------------------------
// Authzid, usernames, SASLprep

#[test]
fn authzid_handling() {
    let stored = creds("pw");
    for mech in Mechanism::ALL {
        let cb = mech.is_plus().then_some(CB);
        let (c, mut s) = pair(mech, "juliet", "pw", cb, Some(CB), true);
        let mut c = c.with_authzid("admin,x=y@example.com");
        match run(&mut c, &mut s, Some(&stored)) {
            Ok(Step::Success {
                username, authzid, ..
            }) => {
                assert_eq!(username, "juliet");
                assert_eq!(authzid.as_deref(), Some("admin,x=y@example.com"), "{mech}");
            }
            other => panic!("{mech}: {other:?}"),
        }
    }
    // Escaped on the wire.
    let mut c =
        ClientExchange::new(Mechanism::ScramSha1, "juliet", "pw", None).with_authzid("a,b=c");
    let first = c.initial().expect("initial");
    assert!(first.starts_with(b"n,a=a=2Cb=3Dc,n=juliet,r="));
    // Bad authzid syntax.
    let mut s = ServerExchange::new(Mechanism::ScramSha1, None, false, SECRET);
    assert!(is_malformed(s.step(b"n,x=juliet,n=juliet,r=abc")));
    let mut s = ServerExchange::new(Mechanism::ScramSha1, None, false, SECRET);
    assert!(is_malformed(s.step(b"n,a=,n=juliet,r=abc")));
    let mut s = ServerExchange::new(Mechanism::ScramSha1, None, false, SECRET);
    assert!(is_malformed(s.step(b"n,a=x=41,n=juliet,r=abc")));
    // PLAIN: empty authzid means none.
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    unwrap_need(s.step(b"\0juliet\0pw").expect("step"));
    match s.provide_credentials(Some(&stored)) {
        Ok(Step::Success { authzid: None, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn username_escapes() {
    let step =
        |msg: &[u8]| ServerExchange::new(Mechanism::ScramSha256, None, false, SECRET).step(msg);
    assert_eq!(
        step(b"n,,n=a=2Cb=3Dc,r=abc"),
        Ok(Step::NeedCredentials {
            username: "a,b=c".into()
        })
    );
    assert!(is_malformed(step(b"n,,n=a=2cb,r=abc")));
    assert!(is_malformed(step(b"n,,n=a=41,r=abc")));
    assert!(is_malformed(step(b"n,,n=a=,r=abc")));
    assert!(is_malformed(step(b"n,,n=a=2,r=abc")));
    assert!(is_malformed(step(b"n,,n=,r=abc")));
    assert!(is_malformed(step(b"n,,n=a\0b,r=abc")));
    // Round trip with such a username.
    let stored = creds("pw");
    let (mut c, mut s) = pair(
        Mechanism::ScramSha256,
        "we,ird=name",
        "pw",
        None,
        None,
        false,
    );
    match run(&mut c, &mut s, Some(&stored)) {
        Ok(Step::Success { username, .. }) => assert_eq!(username, "we,ird=name"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn saslprep_password_and_username() {
    // U+00A0 (no-break space) maps to U+0020; U+00AD (soft hyphen) maps to nothing.
    let stored = creds("pass word");
    for mech in Mechanism::ALL {
        let cb = mech.is_plus().then_some(CB);
        let (mut c, mut s) = pair(
            mech,
            "ju\u{00AD}liet",
            "pass\u{00A0}word",
            cb,
            Some(CB),
            true,
        );
        match run(&mut c, &mut s, Some(&stored)) {
            Ok(Step::Success { username, .. }) => assert_eq!(username, "juliet", "{mech}"),
            other => panic!("{mech}: {other:?}"),
        }
    }
    // Server prepares usernames even if the client did not.
    let mut s = ServerExchange::new(Mechanism::ScramSha1, None, false, SECRET);
    assert_eq!(
        s.step("n,,n=I\u{00AD}X,r=abc".as_bytes()),
        Ok(Step::NeedCredentials {
            username: "IX".into()
        })
    );
    // Prohibited characters.
    let mut s = ServerExchange::new(Mechanism::ScramSha1, None, false, SECRET);
    assert!(is_malformed(s.step("n,,n=bad\u{0007},r=abc".as_bytes())));
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    assert!(is_malformed(s.step("\0bad\u{0007}\0pw".as_bytes())));
    // A password that fails SASLprep never authenticates.
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    unwrap_need(s.step("\0juliet\0pw\u{0007}".as_bytes()).expect("step"));
    assert_eq!(
        s.provide_credentials(Some(&stored)),
        Err(SaslError::NotAuthorized)
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed messages

#[test]
fn malformed_client_first() {
    for msg in [
        &b""[..],
        b"garbage",
        b"n,",
        b"n,,",
        b"x,,n=juliet,r=abc",
        b"n,,r=abc",
        b"n,,n=juliet",
        b"n,,n=juliet,r=",
        b"n,,n=juliet,r=ab\x7fc",
        b"n,,m=ext,n=juliet,r=abc",
        b"n,,n=juliet,r=abc,1=x",
        b"n,,n=juliet,r=abc,",
        b"\xff\xfe,,n=juliet,r=abc",
    ] {
        let mut s = ServerExchange::new(Mechanism::ScramSha256, None, false, SECRET);
        if msg.is_empty() {
            // No initial response: one empty challenge, then the real message is required.
            assert_eq!(s.step(msg), Ok(Step::Challenge(Vec::new())));
            assert!(is_malformed(s.step(msg)));
            continue;
        }
        assert!(
            is_malformed(s.step(msg)),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
    // Extensions after the nonce are tolerated.
    let mut s = ServerExchange::new(Mechanism::ScramSha256, None, false, SECRET);
    assert!(matches!(
        s.step(b"n,,n=juliet,r=abc,x=ext"),
        Ok(Step::NeedCredentials { .. })
    ));
}

#[test]
fn malformed_plain() {
    for msg in [
        &b"juliet"[..],
        b"\0juliet",
        b"\0\0pw",
        b"a\0b\0c\0d",
        b"\0ju\xffliet\0pw",
    ] {
        let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
        assert!(
            is_malformed(s.step(msg)),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn malformed_client_final() {
    let stored = creds("pw");
    let client_first = b"n,,n=juliet,r=clientnonce";
    let nonce =
        |sf: &[u8]| String::from_utf8_lossy(sf).split(',').next().expect("r")[2..].to_owned();
    let proof = B64.encode([7u8; 32]);
    type Case<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let cases: Vec<Case> = vec![
        Box::new(|_| "garbage".into()),
        Box::new(|n| format!("c=biws,r={n}")), // missing proof
        Box::new(|_| format!("c=biws,p={proof}")), // missing nonce
        Box::new(|n| format!("r={n},p={proof}")), // missing c=
        Box::new(|n| format!("c=biws,r={n},p=not*base64!")), // bad base64 proof
        Box::new(|n| format!("c=biws,r={n},p=AAAA")), // wrong proof length
        Box::new(|n| format!("c=b!ws,r={n},p={proof}")), // bad base64 c=
        Box::new(|n| format!("c=biws,r={n}x,p={proof}")), // wrong nonce
        Box::new(|_| format!("c=biws,r=clientnonce,p={proof}")), // client part only
        Box::new(|n| format!("c=biws,r={n},p={proof},x=1")), // proof not last
        Box::new(|n| format!("c=biws,r={n},p={proof}{}", "A".repeat(5000))), // too long
    ];
    for (i, case) in cases.iter().enumerate() {
        let (mut s, sf) =
            server_after_first(Mechanism::ScramSha256, None, client_first, Some(&stored));
        let msg = case(&nonce(&sf));
        assert!(is_malformed(s.step(msg.as_bytes())), "case {i}: {msg}");
    }
    // Correctly-formed proof with the wrong value: not authorized.
    let (mut s, sf) = server_after_first(Mechanism::ScramSha256, None, client_first, Some(&stored));
    let msg = format!("c=biws,r={},p={proof}", nonce(&sf));
    assert_eq!(s.step(msg.as_bytes()), Err(SaslError::NotAuthorized));
}

#[test]
fn over_long_input_rejected() {
    let long_user = "a".repeat(MAX_MESSAGE_LEN);
    let msg = format!("n,,n={long_user},r=abc");
    let mut s = ServerExchange::new(Mechanism::ScramSha1, None, false, SECRET);
    assert!(is_malformed(s.step(msg.as_bytes())));
    let msg = format!("\0{long_user}\0pw");
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    assert!(is_malformed(s.step(msg.as_bytes())));
    // Exactly at the bound is fine (syntax permitting).
    let msg = format!("\0{}\0pw", "a".repeat(MAX_MESSAGE_LEN - 4));
    assert_eq!(msg.len(), MAX_MESSAGE_LEN);
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    assert!(matches!(
        s.step(msg.as_bytes()),
        Ok(Step::NeedCredentials { .. })
    ));
}

#[test]
fn out_of_order_calls() {
    let mut s = ServerExchange::new(Mechanism::ScramSha256, None, false, SECRET);
    assert!(is_malformed(s.provide_credentials(None)));
    let mut s = ServerExchange::new(Mechanism::ScramSha256, None, false, SECRET);
    unwrap_need(s.step(b"n,,n=juliet,r=abc").expect("step"));
    assert!(is_malformed(s.step(b"n,,n=juliet,r=abc")));
    let mut s = ServerExchange::new(Mechanism::Plain, None, false, SECRET);
    unwrap_need(s.step(b"\0juliet\0pw").expect("step"));
    assert!(is_malformed(s.step(b"\0juliet\0pw")));

    // After success nothing more is accepted.
    let stored = creds("pw");
    let (mut c, mut s) = pair(Mechanism::ScramSha1, "juliet", "pw", None, None, false);
    run(&mut c, &mut s, Some(&stored)).expect("success");
    assert!(is_malformed(s.step(b"")));
    assert!(is_malformed(s.provide_credentials(Some(&stored))));

    let mut c = ClientExchange::new(Mechanism::ScramSha256, "juliet", "pw", None);
    assert!(c.respond(b"r=x,s=QQ==,i=1").is_err());
    let mut c = ClientExchange::new(Mechanism::Plain, "juliet", "pw", None);
    assert!(c.verify_success(b"").is_err());
    let mut c = ClientExchange::new(Mechanism::Plain, "juliet", "pw", None);
    c.initial().expect("initial");
    assert!(c.initial().is_err());
}

#[test]
fn client_rejects_bad_server_messages() {
    let first = |c: &mut ClientExchange| {
        let f = c.initial().expect("initial");
        String::from_utf8(f)
            .expect("utf8")
            .rsplit_once("r=")
            .expect("r")
            .1
            .to_owned()
    };
    for bad in [
        "r=other-nonce,s=QSXCR+Q6sek8bf92,i=4096",
        "r={n},s=QSXCR+Q6sek8bf92,i=4096", // no server part
        "r={n}x,s=***,i=4096",
        "r={n}x,s=,i=4096",
        "r={n}x,s=QSXCR+Q6sek8bf92,i=0",
        "r={n}x,s=QSXCR+Q6sek8bf92,i=-1",
        "r={n}x,s=QSXCR+Q6sek8bf92,i=4000000000",
        "m=x,r={n}x,s=QSXCR+Q6sek8bf92,i=4096",
        "r={n}x,s=QSXCR+Q6sek8bf92",
    ] {
        let mut c = ClientExchange::new(Mechanism::ScramSha1, "user", "pencil", None);
        let n = first(&mut c);
        let msg = bad.replace("{n}", &n);
        assert!(c.respond(msg.as_bytes()).is_err(), "{msg}");
    }
    // Forged server signature.
    let stored = creds("pw");
    let mut c =
        ClientExchange::new(Mechanism::ScramSha256, "juliet", "pw", None).with_nonce("fixed");
    let mut s = ServerExchange::new(Mechanism::ScramSha256, None, false, SECRET);
    unwrap_need(s.step(&c.initial().expect("initial")).expect("step"));
    let sf = unwrap_challenge(s.provide_credentials(Some(&stored)).expect("sf"));
    let fin = c.respond(&sf).expect("respond");
    assert!(matches!(s.step(&fin), Ok(Step::Success { .. })));
    let forged = format!("v={}", B64.encode([0u8; 32]));
    assert_eq!(
        c.verify_success(forged.as_bytes()),
        Err(SaslError::NotAuthorized)
    );
    let mut c2 =
        ClientExchange::new(Mechanism::ScramSha256, "juliet", "pw", None).with_nonce("fixed");
    let _ = c2.initial().expect("initial");
    c2.respond(&sf).expect("respond");
    assert_eq!(
        c2.verify_success(b"e=invalid-proof"),
        Err(SaslError::NotAuthorized)
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// Feed random bytes and random mutations of valid messages at every stage; nothing panics.
#[test]
fn random_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5a51);
    // Cheap credentials so the loop stays fast.
    let stored: Vec<_> = [ScramHash::Sha256, ScramHash::Sha1]
        .into_iter()
        .map(|h| derive_credentials(h, "pw", b"salt", 1).expect("derive"))
        .collect();
    let valid_first = b"n,,n=juliet,r=abcdef".to_vec();
    let plus_first = b"p=tls-exporter,,n=juliet,r=abcdef".to_vec();

    let mutate = |rng: &mut rand::rngs::StdRng, base: &[u8]| -> Vec<u8> {
        let mut v = base.to_vec();
        match rng.random_range(0..4) {
            0 => {
                let mut r = vec![0u8; rng.random_range(0..64)];
                rng.fill_bytes(&mut r);
                r
            }
            1 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
                v
            }
            2 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v.truncate(i);
                v
            }
            _ => {
                let i = rng.random_range(0..=v.len());
                let alphabet = b",=\0nrpcyvmsia2C3D";
                v.insert(i, alphabet[rng.random_range(0..alphabet.len())]);
                v
            }
        }
    };

    for round in 0..1500 {
        let mech = Mechanism::ALL[round % Mechanism::ALL.len()];
        let cb = (round % 3 != 0).then(|| CB.to_vec());
        let mut s = ServerExchange::new(mech, cb.clone(), round % 2 == 0, SECRET);
        let base = match mech {
            Mechanism::Plain => b"\0juliet\0pw".to_vec(),
            m if m.is_plus() => plus_first.clone(),
            _ => valid_first.clone(),
        };
        let first = mutate(&mut rng, &base);
        let Ok(Step::NeedCredentials { .. }) = s.step(&first) else {
            continue;
        };
        let known = if rng.random_bool(0.5) {
            Some(&stored[..])
        } else {
            None
        };
        let Ok(Step::Challenge(sf)) = s.provide_credentials(known) else {
            continue;
        };
        let sf = String::from_utf8_lossy(&sf).into_owned();
        let nonce = sf.split(',').next().unwrap_or("r=")[2..].to_owned();
        let valid_final = format!("c=biws,r={nonce},p={}", B64.encode([1u8; 32]));
        let fin = mutate(&mut rng, valid_final.as_bytes());
        let _ = s.step(&fin);
        let _ = s.step(&fin);
        let _ = s.provide_credentials(known);

        // Client side: random server-first and success data.
        let mut c = ClientExchange::new(mech, "juliet", "pw", cb).with_nonce("abc");
        if c.initial().is_ok() && mech != Mechanism::Plain {
            let sf = mutate(&mut rng, format!("r=abc{round},s=c2FsdA==,i=1").as_bytes());
            let _ = c.respond(&sf);
        }
        let mut data = vec![0u8; rng.random_range(0..48)];
        rng.fill_bytes(&mut data);
        let _ = c.verify_success(&data);
    }
}
