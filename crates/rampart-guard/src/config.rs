//! [`GuardConfig`]: plain-data settings of the guard, with the shipped defaults and why.
//!
//! Deserializable from the `[guard]` table of the server's configuration; unknown keys are
//! refused and missing keys take the defaults documented on each field.

use serde::Deserialize;

/// What a rule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse this stanza only.
    Block,
    /// Refuse this stanza and hold everything the sender sends from now on, until an
    /// operator releases the account.
    Quarantine,
    /// Let it through; only log a warning (for trying a rule out on live traffic).
    Log,
}

/// Settings of the guard.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Inspect messages at all. Default `true`: Rampart exists to stop IM worms.
    pub enabled: bool,
    /// The company's own domains. Links to them (and their subdomains) are never lures and
    /// are left out of the behavioural rules (sharing an intranet link with the whole team
    /// is fine); lookalikes of them are lures. The caller always adds the server's domain.
    /// Default: empty (the server domain alone).
    pub trusted_domains: Vec<String>,
    /// Domains phishers imitate; links to lookalikes of them (`rnicrosoft.com`,
    /// `micr0soft.com`, `xn--...` homoglyphs) are lures. Default: the brands most
    /// impersonated in enterprise phishing (Microsoft, Google, Apple, Amazon, PayPal,
    /// LinkedIn, Dropbox, DocuSign, Adobe, DHL). Their genuine domains and subdomains are
    /// never flagged.
    pub brand_domains: Vec<String>,
    /// Lure-link analysis.
    pub lure: LureConfig,
    /// Data-loss prevention on messages to recipients outside `trusted_domains`.
    pub dlp: crate::dlp::DlpConfig,
    /// One account sends the same link/file to many distinct recipients.
    pub blast: BlastConfig,
    /// One account answers each incoming message with the same payload.
    pub auto_reply: AutoReplyConfig,
    /// The same payload hops from account to account.
    pub epidemic: EpidemicConfig,
    /// Many accounts post the same machine-like text into one room.
    pub room_bots: RoomBotsConfig,
    /// Most time one message's signature scan may take, in milliseconds; past it the guard
    /// returns `GuardError::Timeout` and the caller holds the stanza (fail closed). Default
    /// 2000: YARA scans a chat message in microseconds and clamd a 1 MiB file in a few
    /// milliseconds; 2 s only trips on a stuck engine.
    pub scan_timeout_ms: u64,
    /// Most bytes scanned per message text or file; larger inputs are refused with
    /// `GuardError::TooLarge` (fail closed) rather than scanned partially. Default 64 MiB:
    /// above typical upload limits, below clamd's default `StreamMaxLength` (100 MiB).
    pub max_scan_bytes: usize,
    /// Text-only messages need at least this many characters of content (after removing
    /// greetings, names and links, counting letters and digits) to take part in the
    /// behavioural rules (epidemic, and auto_reply with `text_only`). Default 40: "hi", "ok",
    /// "thanks!" never count, and neither do everyday sentences that many people write
    /// independently ("do you have a minute for the review?" has 28); at 40+ characters an
    /// identical text is almost always copied. Machine-like room messages use 4.
    pub min_text_chars: usize,
    /// Most entries each behavioural table keeps (senders × keys, keys, rooms); the least
    /// recently touched are dropped beyond it. Default 100 000: a few tens of MB at most,
    /// ample for a window of traffic on a large server.
    pub max_tracked: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            trusted_domains: Vec::new(),
            brand_domains: [
                "microsoft.com",
                "office.com",
                "live.com",
                "outlook.com",
                "microsoftonline.com",
                "google.com",
                "apple.com",
                "icloud.com",
                "amazon.com",
                "paypal.com",
                "linkedin.com",
                "dropbox.com",
                "docusign.com",
                "adobe.com",
                "dhl.com",
            ]
            .map(String::from)
            .to_vec(),
            dlp: crate::dlp::DlpConfig::default(),
            lure: LureConfig::default(),
            blast: BlastConfig::default(),
            auto_reply: AutoReplyConfig::default(),
            epidemic: EpidemicConfig::default(),
            room_bots: RoomBotsConfig::default(),
            scan_timeout_ms: 2000,
            max_scan_bytes: 64 << 20,
            min_text_chars: 40,
            max_tracked: 100_000,
        }
    }
}

/// Lure-link settings. Lure findings block the message (never quarantine by themselves; a
/// lure sent in a blast is escalated by the blast rule).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LureConfig {
    /// Check links at all. Default `true`.
    pub enabled: bool,
    /// What a lure finding does. Default `block`.
    pub action: Action,
    /// File extensions that run code when opened on a desktop. A link (or shared file)
    /// whose name ends in one — directly, after a decoy (`photo.jpg.exe`), or inside an
    /// archive named after one (`invoice.pdf.exe.zip`) — is a lure. Default: the Windows
    /// executable and script types IM worms have used (exe scr pif com bat cmd vbs vbe js
    /// jse wsf jar msi ps1 hta lnk cpl). Note `js`: a link to a `.js` file is blocked too;
    /// development teams may want to remove it.
    pub blocked_extensions: Vec<String>,
    /// Archive extensions checked for an executable name inside (`x.exe.zip`). Archives
    /// themselves are not blocked (they are ordinary business files). Default zip rar 7z gz
    /// tar tgz cab iso img.
    pub archive_extensions: Vec<String>,
    /// Links whose host is an IP address are lures. Default `true`: worms host droppers on
    /// bare IPs; people share names.
    pub block_ip_literals: bool,
    /// Plain dotted-quad private, loopback and link-local addresses (10/8, 172.16/12,
    /// 192.168/16, 127/8, 169.254/16, fc00::/7, fe80::/10) are allowed: intranet tools are
    /// often reached that way. Obfuscated forms (`http://3232235777/`, hex, octal) are
    /// always lures. Default `true`.
    pub allow_private_ip_literals: bool,
    /// Links through URL shorteners are lures (the destination is hidden). Default `true`.
    pub block_shorteners: bool,
    /// Shortener domains (subdomains included). Default: the common public shorteners.
    pub shorteners: Vec<String>,
    /// Flag lookalikes of brand and trusted domains, mixed-script labels and malformed
    /// punycode. Default `true`.
    pub check_lookalikes: bool,
}

impl Default for LureConfig {
    fn default() -> Self {
        LureConfig {
            enabled: true,
            action: Action::Block,
            blocked_extensions: [
                "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "jar",
                "msi", "ps1", "hta", "lnk", "cpl",
            ]
            .map(String::from)
            .to_vec(),
            archive_extensions: ["zip", "rar", "7z", "gz", "tar", "tgz", "cab", "iso", "img"]
                .map(String::from)
                .to_vec(),
            block_ip_literals: true,
            allow_private_ip_literals: true,
            block_shorteners: true,
            shorteners: [
                "bit.ly",
                "bitly.com",
                "tinyurl.com",
                "t.co",
                "goo.gl",
                "is.gd",
                "v.gd",
                "ow.ly",
                "buff.ly",
                "rebrand.ly",
                "cutt.ly",
                "shorturl.at",
                "rb.gy",
                "t.ly",
                "tiny.cc",
                "bl.ink",
                "short.io",
                "s.id",
                "lnkd.in",
                "trib.al",
                "shorte.st",
                "adf.ly",
                "bc.vc",
                "soo.gd",
                "clck.ru",
                "qr.ae",
                "x.co",
                "y2u.be",
                "tiny.one",
                "urlz.fr",
                "2u.pm",
                "1url.com",
                "po.st",
                "mcaf.ee",
                "su.pr",
                "tr.im",
                "db.tt",
                "qrco.de",
                "u.to",
                "shrtco.de",
            ]
            .map(String::from)
            .to_vec(),
            check_lookalikes: true,
        }
    }
}

macro_rules! rule_config {
    ($(#[$doc:meta])* $name:ident, $threshold:expr, $window:expr, $tdoc:literal, $wdoc:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// Run this rule. Default `true`.
            pub enabled: bool,
            #[doc = $tdoc]
            pub threshold: usize,
            #[doc = $wdoc]
            pub window_secs: u64,
            /// What the rule does when it fires. Default `quarantine`: a worm keeps
            /// spreading from an infected account, so holding only the one message is not
            /// enough.
            pub action: Action,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { enabled: true, threshold: $threshold, window_secs: $window, action: Action::Quarantine }
            }
        }
    };
}

rule_config!(
    /// Contact-list blast: the same untrusted link, file or malware payload from one account
    /// to many distinct recipients. Text-only messages never count (a greeting to the whole
    /// team is fine).
    BlastConfig,
    5,
    600,
    "Distinct recipients that fire the rule. Default 5: the same link to two or three colleagues is ordinary; worms send to the whole contact list.",
    "Sliding window in seconds. Default 600 (10 min): worms pace their sends, but still reach most contacts within minutes."
);

rule_config!(
    /// Epidemic spread: the same payload or text sent on by accounts that had received it
    /// (A→B, B→C, C→D).
    EpidemicConfig,
    3,
    3600,
    "Distinct accounts in the propagation chain (the origin and every account that sent it on) that fire the rule. Default 3: A→B→C→D is three senders.",
    "Sliding window in seconds. Default 3600 (1 h): an IM worm hops within minutes; people forwarding a joke rarely form three hops within an hour."
);

rule_config!(
    /// Bots in rooms: many accounts post the same machine-like text (bot commands with
    /// arguments such as `!ddos 10.0.0.1` or `/join #x`, long tokens, links) into one room.
    RoomBotsConfig,
    4,
    120,
    "Distinct accounts that fire the rule. Default 4: a couple of people repeating a command is normal; a botnet answers in chorus.",
    "Sliding window in seconds. Default 120 (2 min): bots react to a command within seconds."
);

/// Auto-reply worm: the account answers each incoming message with the same payload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoReplyConfig {
    /// Run this rule. Default `true`.
    pub enabled: bool,
    /// Distinct accounts answered with the same payload that fire the rule. Default 3.
    pub threshold: usize,
    /// Sliding window in seconds over which the answers are counted. Default 600 (10 min).
    pub window_secs: u64,
    /// An answer counts only if sent at most this many seconds after receiving a message
    /// from the same account. Default 30: worms answer within seconds.
    pub reply_within_secs: u64,
    /// Also count text-only answers (no link, no file). Default `false`: out-of-office
    /// responders and help-desk bots legitimately answer everyone with the same text, and a
    /// text-only answer carries no payload to infect with.
    pub text_only: bool,
    /// What the rule does when it fires. Default `quarantine`.
    pub action: Action,
}

impl Default for AutoReplyConfig {
    fn default() -> Self {
        AutoReplyConfig {
            enabled: true,
            threshold: 3,
            window_secs: 600,
            reply_within_secs: 30,
            text_only: false,
            action: Action::Quarantine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_tables_keep_per_rule_defaults() {
        let c: GuardConfig = toml::from_str("trusted_domains = ['corp.example']\n[blast]\nthreshold = 7\n[auto_reply]\naction = 'log'\n").unwrap();
        assert_eq!(c.blast.threshold, 7);
        assert_eq!(c.blast.window_secs, 600);
        assert_eq!(c.epidemic.threshold, 3);
        assert_eq!(c.auto_reply.action, Action::Log);
        assert_eq!(c.auto_reply.reply_within_secs, 30);
        assert!(c.enabled);
        assert_eq!(c.trusted_domains, ["corp.example"]);
        assert!(toml::from_str::<GuardConfig>("blats = 1").is_err());
        assert!(toml::from_str::<GuardConfig>("[blast]\naction = 'explode'").is_err());
    }
}
