//! Tests of URL extraction, parsing, normalization and lure classification.

use std::net::Ipv4Addr;

use super::*;

fn ex(t: &str) -> Vec<&str> {
    extract(t).collect()
}

fn key(s: &str) -> String {
    Url::parse(s).unwrap_or_else(|| panic!("parse {s}")).key()
}

#[test]
fn extraction_schemes_case_and_www() {
    assert_eq!(
        ex("see https://example.org/a and HTTP://Example.ORG/B"),
        ["https://example.org/a", "HTTP://Example.ORG/B"]
    );
    assert_eq!(
        ex("ftp://files.example/x.zip"),
        ["ftp://files.example/x.zip"]
    );
    assert_eq!(
        ex("go to www.example.com/path now"),
        ["www.example.com/path"]
    );
    assert_eq!(ex("WWW.Example.com"), ["WWW.Example.com"]);
    assert_eq!(ex("seehttp://glued.example/x"), ["http://glued.example/x"]);
    assert!(ex("no links: a:b, mailto:x@y, awww. wwwx, http://, www.").is_empty());
    assert!(ex("javascript://x file:///etc/passwd").is_empty());
    assert!(ex("").is_empty());
}

#[test]
fn extraction_trailing_punctuation_and_brackets() {
    assert_eq!(ex("look: http://x.example/a."), ["http://x.example/a"]);
    assert_eq!(ex("(see http://x.example/a)"), ["http://x.example/a"]);
    assert_eq!(
        ex("http://en.wikipedia.org/wiki/Foo_(bar))."),
        ["http://en.wikipedia.org/wiki/Foo_(bar)"]
    );
    assert_eq!(
        ex("\"http://x.example/q?a=1\", ok?!"),
        ["http://x.example/q?a=1"]
    );
    assert_eq!(ex("<http://x.example/a>"), ["http://x.example/a"]);
    assert_eq!(ex("http://x.example/a…"), ["http://x.example/a"]);
    assert_eq!(
        ex("two:http://a.example,http://b.example"),
        ["http://a.example,http://b.example"]
    );
    assert_eq!(
        ex("日本語http://x.example/パス。次"),
        ["http://x.example/パス"]
    );
}

#[test]
fn normalization() {
    assert_eq!(key("HTTP://Example.COM/"), "example.com/");
    assert_eq!(key("https://example.com:443/a/"), "example.com/a");
    assert_eq!(key("http://example.com:8080/a"), "example.com:8080/a");
    assert_eq!(key("http://example.com/a/./b/../c//d"), "example.com/a/c/d");
    assert_eq!(
        key("http://example.com/%7euser/%41%2f%2F"),
        "example.com/~user/A%2F%2F"
    );
    assert_eq!(
        key("http://example.com/a?utm_source=x&id=5&fbclid=abc&UTM_medium=y"),
        "example.com/a?id=5"
    );
    assert_eq!(
        key("http://example.com/a?utm_source=x#frag"),
        "example.com/a"
    );
    assert_eq!(key("www.example.com/x"), "www.example.com/x");
    assert_eq!(key("http://user:pw@Example.com./x"), "example.com/x");
    assert_eq!(key("http://example.com\\evil\\x"), "example.com/evil/x");
    assert_eq!(key("http://%65xample.com/"), "example.com/");
    // The same link shared in different ways compares equal.
    let forms = [
        "https://Files.Example.net/Docs/Report.pdf?utm_campaign=x",
        "http://files.example.net/Docs/./Report.pdf",
        "files.example.net/Docs/Report.pdf",
    ];
    let keys: Vec<String> = forms
        .iter()
        .map(|f| {
            Url::parse(f)
                .map(|u| u.key())
                .unwrap_or_else(|| key(&format!("http://{f}")))
        })
        .collect();
    assert!(
        keys.iter()
            .all(|k| k == "files.example.net/Docs/Report.pdf"),
        "{keys:?}"
    );
    for bad in [
        "http://",
        "http:///x",
        "http://exa mple.com",
        "http://[::1/",
        "http://x:99999/",
        "notaurl",
        "http://a@/",
    ] {
        assert!(Url::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn ip_encodings() {
    let v4 = |s: &str| {
        let u = Url::parse(s).unwrap();
        match u.host {
            Host::Ipv4(a) => (a, u.obfuscated_ip),
            other => panic!("{s}: {other:?}"),
        }
    };
    let target = Ipv4Addr::new(192, 168, 1, 1);
    assert_eq!(v4("http://192.168.1.1/"), (target, false));
    assert_eq!(v4("http://3232235777/"), (target, true));
    assert_eq!(v4("http://0xC0A80101/"), (target, true));
    assert_eq!(v4("http://0xc0.0xa8.1.1/"), (target, true));
    assert_eq!(v4("http://0300.0250.01.01/"), (target, true));
    assert_eq!(v4("http://192.168.257/"), (target, true));
    assert_eq!(v4("http://192.11010305/"), (target, true));
    assert_eq!(v4("http://127.1/").0, Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(v4("http://%31%39%32.168.1.1/").0, target);
    assert!(matches!(
        Url::parse("http://[2001:db8::1]:8080/x").unwrap().host,
        Host::Ipv6(_)
    ));
    assert!(matches!(
        Url::parse("http://[fe80::1%25eth0]/").unwrap().host,
        Host::Ipv6(_)
    ));
    // Not IPv4: out of range, or a name with numbers.
    assert!(matches!(
        Url::parse("http://256.256.256.256/").unwrap().host,
        Host::Domain(_)
    ));
    assert!(matches!(
        Url::parse("http://1.2.3.example/").unwrap().host,
        Host::Domain(_)
    ));
    assert!(matches!(
        Url::parse("http://4294967296/").unwrap().host,
        Host::Domain(_)
    ));
}

#[test]
fn punycode() {
    assert_eq!(punycode_decode("mnchen-3ya").as_deref(), Some("münchen"));
    assert_eq!(punycode_decode("80ak6aa92e").as_deref(), Some("аррӏе"));
    assert_eq!(punycode_decode("bcher-kva").as_deref(), Some("bücher"));
    assert!(punycode_decode("99999999999999").is_none());
    assert!(punycode_decode("ü").is_none());
    let u = Url::parse("http://xn--80ak6aa92e.com/").unwrap();
    assert_eq!(u.domain(), Some("аррӏе.com"));
    assert!(
        Url::parse("http://xn--zz$.com/").is_none()
            || Url::parse("http://xn--zzz9999999999.com/").is_some()
    );
    assert!(
        Url::parse("http://xn--99999999999999.com/")
            .unwrap()
            .bad_punycode
    );
}

fn classifier() -> Classifier {
    let cfg = crate::GuardConfig::default();
    Classifier::new(ClassifierSettings {
        blocked_extensions: cfg.lure.blocked_extensions,
        archive_extensions: cfg.lure.archive_extensions,
        block_ip_literals: true,
        allow_private_ip_literals: true,
        block_shorteners: true,
        shorteners: cfg.lure.shorteners,
        check_lookalikes: true,
        protected_domains: cfg.brand_domains,
        trusted_domains: vec!["corp.example".into(), "acmecorp.com".into()],
    })
}

fn classify(s: &str) -> Option<Lure> {
    classifier().classify(&Url::parse(s).unwrap_or_else(|| panic!("parse {s}")))
}

fn rule(s: &str) -> Option<&'static str> {
    classify(s).map(|l| l.rule())
}

#[test]
fn executables() {
    for u in [
        "http://x.example/setup.exe",
        "http://x.example/a/SCREENSAVER.SCR",
        "http://x.example/photo.jpg.exe",
        "http://x.example/photo.jpg%2Eexe",
        "http://x.example/invoice.pdf.exe.zip",
        "http://x.example/download?file=update.msi",
        "http://x.example/run.ps1?x=1",
        "http://x.example/evil.hta.",
        "http://x.example/a.jpg%00.exe",
    ] {
        assert_eq!(rule(u), Some("lure.executable"), "{u}");
    }
    match classify("http://x.example/photo.jpg.exe") {
        Some(Lure::Executable { ext, double, .. }) => {
            assert_eq!(ext, "exe");
            assert!(double);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        classify("http://x.example/a.scr").unwrap().reason(),
        "blocked: link to an executable file (.scr)"
    );
    for u in [
        "http://x.example/report.pdf",
        "http://x.example/archive.zip",
        "http://x.example/exe",
        "http://x.example/",
        "https://www.example.com",
        "https://news.example/2026/11/story.html",
        // The company's own software portal is trusted.
        "https://it.corp.example/vpn-setup.msi",
    ] {
        assert_eq!(rule(u), None, "{u}");
    }
}

#[test]
fn ip_literals() {
    assert_eq!(rule("http://203.0.113.7/x"), Some("lure.ip_literal"));
    assert_eq!(rule("http://3232235777/"), Some("lure.ip_literal"));
    assert_eq!(rule("http://0x7f.1/"), Some("lure.ip_literal"));
    assert_eq!(rule("http://[2001:db8::1]/"), Some("lure.ip_literal"));
    // Intranet addresses in plain form are ordinary.
    assert_eq!(rule("http://10.1.2.3:8080/dashboard"), None);
    assert_eq!(rule("http://192.168.1.1/"), None);
    assert_eq!(rule("http://[fd00::1]/"), None);
}

#[test]
fn shorteners() {
    assert_eq!(rule("https://bit.ly/3xyz"), Some("lure.shortener"));
    assert_eq!(rule("https://BIT.LY/3xyz"), Some("lure.shortener"));
    assert_eq!(rule("http://tinyurl.com/abc"), Some("lure.shortener"));
    assert_eq!(rule("https://t.co/abc"), Some("lure.shortener"));
    assert_eq!(rule("https://notbit.ly/abc"), None);
    assert_eq!(rule("https://microsoft.com/t.co"), None);
}

#[test]
fn lookalikes() {
    for u in [
        "http://rnicrosoft.com/login",
        "http://micros0ft.com/",
        "http://login.rnicrosoft.co.uk/",
        "http://micro-soft.com/",
        "http://microsfot.com/",
        "http://xn--micrsoft-qbh.com/",
        "http://раураl.com/",
        "http://pаypal.com/",
        "http://xn--80ak6aa92e.com/",
        "http://acmec0rp.com/",
        "http://acrnecorp.com/",
        "http://g00gle.com/",
        "http://xn--99999999999999.com/",
    ] {
        assert_eq!(rule(u), Some("lure.lookalike"), "{u}");
    }
    assert_eq!(
        classify("http://rnicrosoft.com/").unwrap().reason(),
        "blocked: link to a site imitating microsoft.com"
    );
    for u in [
        "https://microsoft.com/",
        "https://login.microsoftonline.com/x",
        "https://docs.google.com/x",
        "https://contoso.sharepoint.com/",
        "https://microsoft.github.io/x",
        "https://www.acmecorp.com/",
        "https://münchen.de/",
        "https://bücher.example/",
        "https://правительство.рф/",
        "https://github.com/rust-lang/rust",
        "https://example.com/",
        "https://apple.example/",
        "https://amazing.com/",
        "https://paypal.me/x",
        "https://dhl.de/",
    ] {
        assert_eq!(rule(u), None, "{u}");
    }
}

#[test]
fn skeletons_and_distance() {
    assert_eq!(skeleton("rnicrosoft"), skeleton("microsoft"));
    assert_eq!(skeleton("раураl"), skeleton("paypal"));
    assert!(damerau_1("microsfot", "microsoft"));
    assert!(damerau_1("micosoft", "microsoft"));
    assert!(damerau_1("microsofft", "microsoft"));
    assert!(!damerau_1("microsoft", "microsoft"));
    assert!(!damerau_1("mcrosft", "microsoft"));
    assert!(mixed_script("pаypal"));
    assert!(!mixed_script("paypal"));
    assert!(!mixed_script("münchen"));
    assert!(!mixed_script("東京tokyo"));
}

#[test]
fn hostile_input_never_panics() {
    let long = "a".repeat(100_000);
    let inputs = [
        "http://".to_owned(),
        "http://[".to_owned(),
        "http://%".to_owned(),
        "http://%zz/".to_owned(),
        "http://a%/b%".to_owned(),
        "http://xn--/".to_owned(),
        "http://xn--ls8h.xn--.xn--a/".to_owned(),
        format!("http://{long}"),
        format!("http://x.example/{long}"),
        format!("www.{long}"),
        "http://\u{FEFF}x/".to_owned(),
        "http://0x/".to_owned(),
        "http://0x.0x.0x.0x/".to_owned(),
        "http://..../".to_owned(),
        "http://x.example/%F0%9F%98%80.exe".to_owned(),
        "http://éxample.com:/".to_owned(),
    ];
    for i in &inputs {
        let _ = ex(i);
        if let Some(u) = Url::parse(i) {
            let _ = u.key();
            let _ = classifier().classify(&u);
        }
    }
}
