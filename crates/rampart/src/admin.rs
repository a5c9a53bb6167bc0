//! Administrator commands beyond accounts: file scanning, quarantine, security events and
//! the compliance archive. Each works on `data_dir` directly, also while the server runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rampart_archive::{Archive, ExportFormat, LegalHold, Record, RecordKind, SearchQuery, VerdictKind};
use rampart_guard::Verdict;

use crate::config::Config;
use crate::setup;

/// Parse `90s`, `15m`, `24h`, `7d` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => bail!("{s:?} is not a duration like 30m, 24h or 7d"),
    };
    Ok(Duration::from_secs(secs))
}

/// Parse a time bound: RFC 3339 (`2026-11-26T10:00:00Z`), a date (`2026-11-26`), or a
/// duration back from now (`24h`).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(0));
    }
    let ago = parse_duration(s).with_context(|| format!("{s:?} is neither a time (RFC 3339 or YYYY-MM-DD) nor a duration"))?;
    Ok(chrono::Utc::now().timestamp_millis() - ago.as_millis() as i64)
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

/// `rampart scan FILE...`: a verdict line per file; true if anything was malicious.
pub async fn scan(cfg: &Config, files: &[PathBuf]) -> Result<bool> {
    let Some(guard) = setup::build_guard(cfg)? else { bail!("threat defense is switched off ([guard] enabled = false)") };
    let mut infected = false;
    let mut errors = false;
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                println!("{}: ERROR {e}", f.display());
                errors = true;
                continue;
            }
        };
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match guard.scan_file(&name, &data).await {
            Ok(Verdict::Allow) => println!("{}: OK", f.display()),
            Ok(Verdict::Block(x) | Verdict::Quarantine(x)) => {
                infected = true;
                let sig = x.evidence.signature.as_deref().unwrap_or(&x.rule);
                println!("{}: {} FOUND ({})", f.display(), sig, x.reason);
            }
            Err(e) => {
                println!("{}: ERROR {e}", f.display());
                errors = true;
            }
        }
    }
    if errors && !infected {
        bail!("some files could not be scanned");
    }
    Ok(infected)
}

pub async fn quarantine_list(cfg: &Config) -> Result<()> {
    let db = setup::open_db(cfg).await?;
    let list = db.security_stores().security.quarantined().await?;
    if list.is_empty() {
        println!("no account is quarantined");
    }
    for (account, rule, reason, at) in list {
        println!("{account}\t{}\t{rule}\t{reason}", fmt_ms(at));
    }
    Ok(())
}

pub async fn quarantine_release(cfg: &Config, jid: &str) -> Result<()> {
    let db = setup::open_db(cfg).await?;
    let account = setup::account_jid(cfg, jid)?;
    let sec = db.security_stores().security;
    if !sec.release(account.as_str()).await? {
        bail!("{account} is not quarantined");
    }
    let ev = rampart_store::security::SecurityEvent {
        id: 0,
        at_ms: chrono::Utc::now().timestamp_millis(),
        account: account.as_str().to_owned(),
        rule: "quarantine".into(),
        action: "release".into(),
        reason: "released by an administrator".into(),
        evidence_json: "{}".into(),
    };
    sec.record_event(&ev).await?;
    println!("released {account} (a running server picks this up within a few seconds)");
    Ok(())
}

pub async fn events_list(cfg: &Config, since: Option<&str>, json: bool, limit: usize) -> Result<()> {
    let db = setup::open_db(cfg).await?;
    let since_ms = since.map(parse_time).transpose()?;
    let events = db.security_stores().security.events(since_ms, limit).await?;
    for e in events {
        if json {
            let evidence: serde_json::Value = serde_json::from_str(&e.evidence_json).unwrap_or(serde_json::Value::Null);
            let v = serde_json::json!({
                "id": e.id, "at": fmt_ms(e.at_ms), "at_ms": e.at_ms, "account": e.account,
                "rule": e.rule, "action": e.action, "reason": e.reason, "evidence": evidence,
            });
            println!("{v}");
        } else {
            println!("{}\t{}\t{}\t{}\t{}", fmt_ms(e.at_ms), e.action, e.account, e.rule, e.reason);
        }
    }
    Ok(())
}

async fn open_archive(cfg: &Config) -> Result<Archive> {
    Archive::open(&cfg.data_dir, setup::archive_options(cfg)).await.context("opening the compliance archive")
}

pub async fn archive_verify(cfg: &Config) -> Result<bool> {
    let archive = open_archive(cfg).await?;
    let r = archive.verify().await?;
    match &r.failure {
        None => {
            println!(
                "ok: {} records, {} tombstones, {} checkpoints verified; head seq {} hash {}",
                r.records_checked,
                r.tombstones_checked,
                r.checkpoints_checked,
                r.last_seq,
                hex_of(&r.last_hash)
            );
            Ok(true)
        }
        Some(f) => {
            let prefix = format!("record {}: ", f.seq);
            println!("TAMPERED: record {}: {}", f.seq, f.reason.strip_prefix(&prefix).unwrap_or(&f.reason));
            println!("(verified {} records before it)", r.records_checked);
            Ok(false)
        }
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Filters shared by `archive search` and `archive export`.
#[derive(clap::Args, Debug, Default)]
pub struct ArchiveFilter {
    /// Records sent or received by this account.
    #[arg(long)]
    pub from: Option<String>,
    /// Records exchanged with this peer.
    #[arg(long)]
    pub with: Option<String>,
    /// Lower time bound: RFC 3339, YYYY-MM-DD, or a duration back from now (24h).
    #[arg(long)]
    pub since: Option<String>,
    /// Upper time bound (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Only records with this verdict: delivered, offline, blocked, quarantined, bounced.
    #[arg(long)]
    pub verdict: Option<String>,
    /// Only records of this kind: message, subscription, login, logout, file, publish,
    /// moderation.
    #[arg(long)]
    pub kind: Option<String>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<u32>,
}

impl ArchiveFilter {
    fn query(&self, cfg: &Config, text: Option<String>) -> Result<SearchQuery> {
        let verdict = match self.verdict.as_deref() {
            None => None,
            Some(v) => Some(match v {
                "delivered" => VerdictKind::Delivered,
                "offline" => VerdictKind::Offline,
                "blocked" => VerdictKind::Blocked,
                "quarantined" => VerdictKind::Quarantined,
                "bounced" => VerdictKind::Bounced,
                _ => bail!("--verdict: expected delivered, offline, blocked, quarantined or bounced"),
            }),
        };
        Ok(SearchQuery {
            text: text.filter(|t| !t.trim().is_empty()),
            account: self.from.as_deref().map(|j| setup::account_jid(cfg, j).map(|j| j.as_str().to_owned())).transpose()?,
            with: self.with.clone(),
            since_ms: self.since.as_deref().map(parse_time).transpose()?,
            until_ms: self.until.as_deref().map(parse_time).transpose()?,
            verdict,
            kind: match self.kind.as_deref() {
                None => None,
                Some(k) => Some(RecordKind::parse(k).with_context(|| {
                    format!("--kind: {k:?} is not one of message, subscription, login, logout, file, publish, moderation")
                })?),
            },
            limit: self.limit,
            ..SearchQuery::default()
        })
    }
}

fn print_record(r: &Record, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let rec = &r.record;
    let verdict = serde_json::to_value(&rec.verdict).ok().and_then(|v| {
        let kind = v.get("verdict")?.as_str()?.to_owned();
        Some(match v.get("rule").and_then(|r| r.as_str()) {
            Some(rule) => format!("{kind}({rule})"),
            None => kind,
        })
    });
    println!(
        "#{}\t{}\t{}\t{} -> {}\t{}\t{}",
        r.seq,
        fmt_ms(rec.at_ms),
        rec.kind.as_str(),
        rec.from,
        rec.to,
        verdict.unwrap_or_default(),
        rec.body.as_deref().unwrap_or("").replace('\n', " ")
    );
}

pub async fn archive_search(cfg: &Config, text: Option<String>, filter: &ArchiveFilter, json: bool) -> Result<()> {
    let archive = open_archive(cfg).await?;
    let q = filter.query(cfg, text)?;
    for r in archive.search(&q).await? {
        print_record(&r, json);
    }
    Ok(())
}

pub async fn archive_export(cfg: &Config, format: &str, out: &Path, text: Option<String>, filter: &ArchiveFilter) -> Result<()> {
    let format = match format {
        "jsonl" => ExportFormat::Jsonl,
        "eml" => ExportFormat::Eml,
        _ => bail!("--format: expected jsonl or eml"),
    };
    let archive = open_archive(cfg).await?;
    let q = filter.query(cfg, text)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let m = archive.export(&q, format, out).await?;
    println!("exported {} records to {} (manifest.json carries the chain hashes and the signed checkpoint)", m.records.len(), out.display());
    Ok(())
}

/// `rampart archive verify-export DIR`: true if the export checks out.
pub fn verify_export(dir: &Path, public_key: Option<&str>) -> Result<bool> {
    let key = match public_key {
        None => None,
        Some(hex) => {
            let hex = hex.trim();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--public-key: expected 64 hex digits (the content of archive-signing.pub)");
            }
            let mut k = [0u8; 32];
            for (i, byte) in k.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
            }
            Some(k)
        }
    };
    match rampart_archive::verify_export(dir, key.as_ref()) {
        Ok(v) => {
            println!(
                "ok: {} records verified against checkpoint {} signed by {}",
                v.records, v.checkpoint_seq, v.public_key
            );
            Ok(true)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(false)
        }
    }
}

pub async fn hold_add(cfg: &Config, reason: String, text: Option<String>, filter: &ArchiveFilter) -> Result<()> {
    if filter.kind.is_some() {
        bail!("--kind: a legal hold keeps records of every kind");
    }
    let archive = open_archive(cfg).await?;
    let q = filter.query(cfg, text)?;
    let id = archive
        .add_hold(LegalHold { reason, account: q.account, with: q.with, text: q.text, since_ms: q.since_ms, until_ms: q.until_ms })
        .await?;
    println!("legal hold {id} added");
    Ok(())
}

pub async fn hold_list(cfg: &Config) -> Result<()> {
    let archive = open_archive(cfg).await?;
    for h in archive.holds().await? {
        let state = match h.released_at_ms {
            Some(t) => format!("released {}", fmt_ms(t)),
            None => "active".into(),
        };
        println!("{}\t{}\t{}\t{}", h.id, fmt_ms(h.created_at_ms), state, serde_json::to_string(&h.hold).unwrap_or_default());
    }
    Ok(())
}

pub async fn hold_release(cfg: &Config, id: i64) -> Result<()> {
    open_archive(cfg).await?.release_hold(id).await?;
    println!("legal hold {id} released");
    Ok(())
}

pub async fn retention_run(cfg: &Config, older_than: &str) -> Result<()> {
    let archive = open_archive(cfg).await?;
    let age = parse_duration(older_than)?;
    let r = archive.apply_retention(chrono::Utc::now().timestamp_millis(), age).await?;
    println!(
        "deleted {} records in {} segments (signed tombstones left); {} old segments kept under legal hold",
        r.deleted_records,
        r.deleted_segments.len(),
        r.held_segments.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_time("1h").unwrap() < chrono::Utc::now().timestamp_millis());
    }
}
