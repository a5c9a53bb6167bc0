//! Data-loss prevention on traffic that leaves the company: payment card numbers (with the
//! Luhn check and a known issuer prefix), national identity numbers, private keys and cloud
//! credentials, and the administrator's own regular expressions.
//!
//! The guard runs these only on messages whose recipient is outside the company's domains
//! (`trusted_domains`, which always hold the server's domain and so its subdomains): what
//! people share with each other inside the company is not a leak. A match is a content
//! finding with the `dlp.*` rule that matched; the evidence names the kind of data and a
//! masked form (`**** **** **** 4242`), never the data itself, so the security event log does
//! not become a second copy of the leak.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::config::Action;

/// Settings of the `[guard.dlp]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlpConfig {
    /// Check outbound messages at all. Default `true`: the federation link is the border.
    pub enabled: bool,
    /// What a match does. Default `block`: the sender gets `policy-violation` naming the kind
    /// of data; `log` only records the event (for trying the patterns out on live traffic).
    pub action: Action,
    /// Payment card numbers: 13–19 digits (spaces or dashes allowed between groups) that pass
    /// the Luhn check and start with a card issuer's prefix. Default `true`.
    pub card_numbers: bool,
    /// National identity number formats to look for: `us-ssn` (US Social Security number,
    /// `123-45-6789`, impossible ranges excluded), `uk-nino` (UK National Insurance number),
    /// `iban` (international bank account numbers, mod-97 checked). Default: all three.
    pub national_ids: Vec<String>,
    /// PEM/OpenSSH/PGP private key blocks. Default `true`.
    pub private_keys: bool,
    /// Cloud and SaaS credentials: AWS access key ids and secret keys, GitHub, Slack, Google
    /// API, Stripe live keys, Azure storage account keys. Default `true`.
    pub cloud_credentials: bool,
    /// Extra patterns: `{ name = "project-codename", pattern = "(?i)\\bbluebird\\b" }`.
    /// The name becomes the rule (`dlp.custom.<name>`) and the reason text.
    pub custom: Vec<CustomPattern>,
}

impl Default for DlpConfig {
    fn default() -> Self {
        DlpConfig {
            enabled: true,
            action: Action::Block,
            card_numbers: true,
            national_ids: vec!["us-ssn".into(), "uk-nino".into(), "iban".into()],
            private_keys: true,
            cloud_credentials: true,
            custom: Vec::new(),
        }
    }
}

/// An administrator's pattern.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    pub name: String,
    pub pattern: String,
}

/// One match: the rule id, what it is in words, and a masked sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlpMatch {
    /// `dlp.card_number`, `dlp.us_ssn`, `dlp.private_key`, `dlp.custom.<name>`, ...
    pub rule: String,
    /// "a payment card number", "a private key", ...
    pub what: String,
    /// The matched text with all but its last few characters masked.
    pub masked: String,
}

/// Error building the patterns (a custom regex that does not compile).
#[derive(Debug, thiserror::Error)]
#[error("guard.dlp.custom {name:?}: {error}")]
pub struct DlpError {
    pub name: String,
    pub error: String,
}

struct Pattern {
    rule: String,
    what: String,
    re: Regex,
    /// An extra check on the match (checksums, impossible ranges).
    check: Option<fn(&str) -> bool>,
}

/// The compiled patterns.
pub struct Dlp {
    cards: bool,
    patterns: Vec<Pattern>,
}

/// Most bytes a compiled custom pattern may take (an admin typo must not eat the heap).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn builtin(rule: &str, what: &str, re: &str, check: Option<fn(&str) -> bool>) -> Pattern {
    Pattern {
        rule: rule.to_owned(),
        what: what.to_owned(),
        // Built-in patterns are constants, compiled by the unit tests.
        re: Regex::new(re).unwrap_or_else(|e| panic!("built-in DLP pattern {rule}: {e}")),
        check,
    }
}

impl Dlp {
    /// Compile the configured patterns.
    pub fn new(c: &DlpConfig) -> Result<Self, DlpError> {
        let mut patterns = Vec::new();
        for id in &c.national_ids {
            match id.as_str() {
                "us-ssn" => patterns.push(builtin(
                    "dlp.us_ssn",
                    "a US Social Security number",
                    r"\b\d{3}-\d{2}-\d{4}\b",
                    Some(valid_ssn),
                )),
                "uk-nino" => patterns.push(builtin(
                    "dlp.uk_nino",
                    "a UK National Insurance number",
                    r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
                    Some(valid_nino),
                )),
                "iban" => patterns.push(builtin(
                    "dlp.iban",
                    "a bank account number (IBAN)",
                    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
                    Some(valid_iban),
                )),
                other => {
                    return Err(DlpError {
                        name: other.to_owned(),
                        error: "unknown national id format (known: us-ssn, uk-nino, iban)".into(),
                    });
                }
            }
        }
        if c.private_keys {
            patterns.push(builtin(
                "dlp.private_key",
                "a private key",
                r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
                None,
            ));
        }
        if c.cloud_credentials {
            for (rule, what, re) in [
                ("dlp.aws_key", "an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
                (
                    "dlp.aws_secret",
                    "an AWS secret access key",
                    r"(?i)aws_?secret_?(?:access_?)?key\s*[=:]\s*[A-Za-z0-9/+=]{40}",
                ),
                ("dlp.github_token", "a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
                ("dlp.slack_token", "a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
                ("dlp.google_api_key", "a Google API key", r"\bAIza[0-9A-Za-z_\-]{35}"),
                ("dlp.stripe_key", "a Stripe live key", r"\b[sr]k_live_[0-9A-Za-z]{20,}"),
                ("dlp.azure_storage_key", "an Azure storage account key", r"AccountKey=[A-Za-z0-9+/=]{80,}"),
            ] {
                patterns.push(builtin(rule, what, re, None));
            }
        }
        for p in &c.custom {
            let re = RegexBuilder::new(&p.pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| DlpError { name: p.name.clone(), error: e.to_string() })?;
            patterns.push(Pattern {
                rule: format!("dlp.custom.{}", p.name),
                what: format!("data matching the company's \"{}\" pattern", p.name),
                re,
                check: None,
            });
        }
        Ok(Dlp { cards: c.card_numbers, patterns })
    }

    /// The first sensitive item in `text`, if any.
    pub fn find(&self, text: &str) -> Option<DlpMatch> {
        if self.cards
            && let Some(card) = find_card(text)
        {
            return Some(DlpMatch {
                rule: "dlp.card_number".into(),
                what: "a payment card number".into(),
                masked: mask(&card),
            });
        }
        for p in &self.patterns {
            for m in p.re.find_iter(text) {
                if p.check.is_none_or(|ok| ok(m.as_str())) {
                    return Some(DlpMatch { rule: p.rule.clone(), what: p.what.clone(), masked: mask(m.as_str()) });
                }
            }
        }
        None
    }
}

/// Keep the last four characters (of at least eight), mask the rest.
fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let keep = if chars.len() >= 8 { 4 } else { 0 };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i + keep >= chars.len() || !c.is_ascii_alphanumeric() { *c } else { '*' })
        .collect()
}

/// Candidate card numbers: runs of digits where single spaces or dashes may separate groups.
fn find_card(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && (b[i - 1].is_ascii_alphanumeric())) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::with_capacity(19);
        let mut end = i;
        let mut j = i;
        while j < b.len() && digits.len() <= 19 {
            if b[j].is_ascii_digit() {
                digits.push(b[j] - b'0');
                end = j + 1;
                j += 1;
            } else if matches!(b[j], b' ' | b'-') && j + 1 < b.len() && b[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let bounded = end >= b.len() || !b[end].is_ascii_alphanumeric();
        if bounded && (13..=19).contains(&digits.len()) && issuer_prefix(&digits) && luhn(&digits) {
            return Some(text[start..end].to_owned());
        }
        i = end.max(i + 1);
    }
    None
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro prefixes.
fn issuer_prefix(d: &[u8]) -> bool {
    let n = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&n(2)) && len == 16 || matches!(n(2), 50 | 56..=59) && len >= 12,
        2 => (2221..=2720).contains(&n(4)) && len == 16,
        3 => matches!(n(2), 34 | 37) && len == 15 || (3528..=3589).contains(&n(4)) || matches!(n(2), 30 | 36 | 38 | 39) && len >= 14,
        6 => n(4) == 6011 || n(2) == 65 || (644..=649).contains(&n(3)) || n(2) == 62 || n(2) == 67,
        _ => false,
    }
}

fn valid_ssn(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    let [area, group, serial] = p[..] else { return false };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn valid_nino(s: &str) -> bool {
    let prefix: String = s.chars().take(2).collect();
    !matches!(prefix.as_str(), "BG" | "GB" | "NK" | "KN" | "TN" | "NT" | "ZZ")
}

/// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
fn valid_iban(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dlp() -> Dlp {
        Dlp::new(&DlpConfig {
            custom: vec![CustomPattern { name: "bluebird".into(), pattern: r"(?i)\bproject bluebird\b".into() }],
            ..DlpConfig::default()
        })
        .expect("patterns compile")
    }

    fn rule(text: &str) -> Option<String> {
        dlp().find(text).map(|m| m.rule)
    }

    #[test]
    fn card_numbers_need_luhn_and_an_issuer() {
        assert_eq!(rule("my card is 4111 1111 1111 1111, exp 12/29").as_deref(), Some("dlp.card_number"));
        assert_eq!(rule("4111-1111-1111-1111").as_deref(), Some("dlp.card_number"));
        assert_eq!(rule("amex 378282246310005").as_deref(), Some("dlp.card_number"));
        assert_eq!(rule("mc 5555555555554444.").as_deref(), Some("dlp.card_number"));
        // Luhn fails.
        assert_eq!(rule("4111 1111 1111 1112"), None);
        // Luhn passes but no issuer starts with 1.
        assert_eq!(rule("1234567812345670"), None);
        // Order numbers, phone numbers, timestamps.
        assert_eq!(rule("order 20261126 shipped, call +1 555 0100"), None);
        assert_eq!(rule("build 1764180000000 done"), None);
        // Inside a longer token: not a card.
        assert_eq!(rule("id=a4111111111111111"), None);
        let m = dlp().find("4111 1111 1111 1111").expect("match");
        assert_eq!(m.masked, "**** **** **** 1111");
    }

    #[test]
    fn national_ids() {
        assert_eq!(rule("SSN 123-45-6789").as_deref(), Some("dlp.us_ssn"));
        assert_eq!(rule("SSN 000-45-6789"), None);
        assert_eq!(rule("SSN 666-45-6789"), None);
        assert_eq!(rule("call 555-12-3456"), Some("dlp.us_ssn".into()));
        assert_eq!(rule("NI number AB 12 34 56 C").as_deref(), Some("dlp.uk_nino"));
        assert_eq!(rule("NI GB123456A"), None);
        assert_eq!(rule("IBAN DE89 3704 0044 0532 0130 00 please").as_deref(), Some("dlp.iban"));
        assert_eq!(rule("GB82WEST12345698765432").as_deref(), Some("dlp.iban"));
        // Wrong check digits.
        assert_eq!(rule("DE88 3704 0044 0532 0130 00"), None);
    }

    #[test]
    fn keys_and_credentials() {
        assert_eq!(rule("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl...").as_deref(), Some("dlp.private_key"));
        assert_eq!(rule("-----BEGIN PRIVATE KEY-----").as_deref(), Some("dlp.private_key"));
        assert_eq!(rule("-----BEGIN PUBLIC KEY-----"), None);
        assert_eq!(rule("key AKIAIOSFODNN7EXAMPLE").as_deref(), Some("dlp.aws_key"));
        assert_eq!(
            rule("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").as_deref(),
            Some("dlp.aws_secret")
        );
        assert_eq!(rule("token ghp_0123456789abcdefghijABCDEFGHIJ012345").as_deref(), Some("dlp.github_token"));
        assert_eq!(rule("xoxb-123456789012-abcdefghij").as_deref(), Some("dlp.slack_token"));
        assert_eq!(rule("AIzaSyA1234567890abcdefghijklmnopqrstuv").as_deref(), Some("dlp.google_api_key"));
        assert_eq!(rule("sk_live_4eC39HqLyjWDarjtT1zdp7dc").as_deref(), Some("dlp.stripe_key"));
    }

    #[test]
    fn custom_patterns_and_ordinary_chat() {
        assert_eq!(rule("status of Project Bluebird?").as_deref(), Some("dlp.custom.bluebird"));
        for ok in [
            "see you at 10:30 in room 4-112",
            "the invoice total is 1,234.56 EUR",
            "ticket JIRA-4421 is fixed",
            "my number is +44 20 7946 0958",
            "ssh-rsa AAAAB3NzaC1yc2E is my public key",
            "grüße aus München 🙂",
        ] {
            assert_eq!(rule(ok), None, "{ok}");
        }
    }

    #[test]
    fn bad_custom_patterns_and_ids_are_named() {
        let e = Dlp::new(&DlpConfig {
            custom: vec![CustomPattern { name: "broken".into(), pattern: "(unclosed".into() }],
            ..DlpConfig::default()
        })
        .err()
        .expect("refused");
        assert_eq!(e.name, "broken");
        let e = Dlp::new(&DlpConfig { national_ids: vec!["xx-id".into()], ..DlpConfig::default() }).err().expect("refused");
        assert!(e.error.contains("unknown national id"), "{e}");
    }
}
