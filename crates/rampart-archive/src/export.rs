//! Export to JSON Lines (and RFC 5322 `.eml`) with a manifest an outside party can verify,
//! and the verifier ([`verify_export`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{ArchiveError, Result};
use crate::hash::{self, Fields};
use crate::types::{
    ExportFormat, ExportManifest, ExportVerification, ManifestRecord, Record, SearchQuery,
    Tombstone,
};
use crate::{Archive, rows_to_records};

/// Manifest format version.
pub const MANIFEST_VERSION: &str = "rampart-archive-export/1";
const MANIFEST: &str = "manifest.json";
const RECORDS: &str = "records.jsonl";

fn write_file(path: &Path, bytes: &[u8]) -> Result<String> {
    let mut f = std::fs::File::create(path).map_err(|e| ArchiveError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ArchiveError::io(path, e))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

pub(crate) async fn export(
    archive: &Archive,
    q: &SearchQuery,
    format: ExportFormat,
    out_dir: &Path,
) -> Result<ExportManifest> {
    let manifest_path = out_dir.join(MANIFEST);
    if manifest_path.exists() {
        return Err(ArchiveError::InvalidQuery(format!(
            "{} already holds an export",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| ArchiveError::io(out_dir, e))?;
    archive.sync_index().await?;
    let backend = archive.backend();
    let mut query = q.clone();
    query.limit = Some(q.limit.unwrap_or(u32::MAX));
    let mut records = rows_to_records(backend.search(&query, None).await?)?;
    records.reverse();

    // A signed checkpoint covering the newest exported record.
    let newest = records.last().map_or(0, |r| r.seq);
    let checkpoint = match backend.checkpoint_covering(newest).await? {
        Some(cp) => cp,
        None => archive.checkpoint().await?,
    };

    // The spine: digests from the oldest exported record to the checkpoint.
    let mut spine = Vec::new();
    let mut tombstones = Vec::new();
    if let Some(oldest) = records.first().map(|r| r.seq) {
        let all_tombs = backend.tombstones().await?;
        let mut next = oldest;
        while next <= checkpoint.seq {
            if let Some(t) = all_tombs.iter().find(|t| t.first_seq == next) {
                tombstones.push(t.clone());
                next = t.last_seq + 1;
                continue;
            }
            let upto = all_tombs
                .iter()
                .map(|t| t.first_seq)
                .filter(|&s| s > next)
                .min()
                .map_or(checkpoint.seq, |s| (s - 1).min(checkpoint.seq));
            let rows = backend.rows(next, upto, 4096).await?;
            if rows.is_empty() {
                return Err(ArchiveError::Backend(format!(
                    "record {next} is missing; run verify"
                )));
            }
            for row in rows {
                if u64::try_from(row.seq).ok() != Some(next) {
                    return Err(ArchiveError::Backend(format!(
                        "record {next} is missing; run verify"
                    )));
                }
                spine.push((next, hex::encode(row.fields().digest())));
                next += 1;
            }
        }
    }

    let mut files = Vec::new();
    let mut jsonl = Vec::new();
    for r in &records {
        serde_json::to_writer(&mut jsonl, r)
            .map_err(|e| ArchiveError::Backend(format!("serializing record {}: {e}", r.seq)))?;
        jsonl.push(b'\n');
    }
    files.push((
        RECORDS.to_owned(),
        write_file(&out_dir.join(RECORDS), &jsonl)?,
    ));

    let mut manifest_records = Vec::with_capacity(records.len());
    if format == ExportFormat::Eml {
        let eml_dir = out_dir.join("eml");
        std::fs::create_dir_all(&eml_dir).map_err(|e| ArchiveError::io(&eml_dir, e))?;
        for r in &records {
            let name = format!("eml/{:012}.eml", r.seq);
            let digest = write_file(&out_dir.join(&name), render_eml(r).as_bytes())?;
            files.push((name.clone(), digest));
            manifest_records.push(ManifestRecord {
                seq: r.seq,
                hash: hex::encode(r.hash),
                prev_hash: hex::encode(r.prev_hash),
                file: Some(name),
            });
        }
    } else {
        manifest_records.extend(records.iter().map(|r| ManifestRecord {
            seq: r.seq,
            hash: hex::encode(r.hash),
            prev_hash: hex::encode(r.prev_hash),
            file: None,
        }));
    }

    let manifest = ExportManifest {
        version: MANIFEST_VERSION.to_owned(),
        format,
        created_at_ms: crate::now_ms(),
        query: q.clone(),
        public_key: hex::encode(archive.public_key()),
        records: manifest_records,
        spine,
        tombstones,
        checkpoint,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ArchiveError::Backend(format!("serializing manifest: {e}")))?;
    write_file(&manifest_path, &text)?;
    Ok(manifest)
}

/// A header value safe for RFC 5322: printable ASCII as is, anything else as an RFC 2047
/// encoded word (so no CR/LF from a stanza can inject headers).
fn header_value(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        s.to_owned()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        )
    }
}

fn base64_lines(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// Render a record as a MIME message: headers name the parties, time, verdict and chain
/// position; parts carry the body, the stanza XML and the metadata.
pub(crate) fn render_eml(r: &Record) -> String {
    let n = &r.record;
    let date = chrono::DateTime::from_timestamp_millis(n.at_ms)
        .map(|d| d.to_rfc2822())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    let boundary = format!("rampart-archive-{}-{}", r.seq, &hex::encode(r.hash)[..16]);
    let (verdict, rule, reason) = n.verdict.columns();
    let mut m = String::new();
    let mut h = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(&header_value(value));
        m.push_str("\r\n");
    };
    h("From", &n.from);
    h("To", &n.to);
    h("Date", &date);
    h(
        "Message-ID",
        &format!(
            "<{}.{}@rampart-archive.invalid>",
            r.seq,
            &hex::encode(r.hash)[..16]
        ),
    );
    h(
        "Subject",
        &format!(
            "[archive {}] {} {} {}",
            r.seq,
            n.kind.as_str(),
            n.direction.as_str(),
            verdict
        ),
    );
    h("X-Rampart-Seq", &r.seq.to_string());
    h("X-Rampart-Hash", &hex::encode(r.hash));
    h("X-Rampart-Prev-Hash", &hex::encode(r.prev_hash));
    h("X-Rampart-Kind", n.kind.as_str());
    h("X-Rampart-Direction", n.direction.as_str());
    h("X-Rampart-Verdict", verdict);
    if let Some(rule) = rule {
        h("X-Rampart-Verdict-Rule", rule);
    }
    if let Some(reason) = reason {
        h("X-Rampart-Verdict-Reason", reason);
    }
    if let Some(d) = &n.remote_domain {
        h("X-Rampart-Remote-Domain", d);
    }
    if let Some(id) = &n.stanza_id {
        h("X-Rampart-Stanza-Id", id);
    }
    h("X-Rampart-At-Ms", &n.at_ms.to_string());
    h("MIME-Version", "1.0");
    h(
        "Content-Type",
        &format!("multipart/mixed; boundary=\"{boundary}\""),
    );
    m.push_str("\r\n");
    let mut part = |ctype: &str, name: Option<&str>, content: &str| {
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: {ctype}; charset=utf-8\r\n"
        ));
        if let Some(name) = name {
            m.push_str(&format!(
                "Content-Disposition: attachment; filename=\"{name}\"\r\n"
            ));
        }
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        m.push_str(&base64_lines(content.as_bytes()));
    };
    part("text/plain", None, n.body.as_deref().unwrap_or(""));
    if let Some(x) = &n.stanza_xml {
        part("application/xml", Some("stanza.xml"), x);
    }
    if let Some(j) = &n.meta_json {
        part("application/json", Some("meta.json"), j);
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m
}

fn invalid(msg: impl Into<String>) -> ArchiveError {
    ArchiveError::ExportInvalid(msg.into())
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| invalid(format!("{what} is not 32 bytes of hex")))?;
    Ok(out)
}

/// Verify an export directory on its own (no database): file digests, every record's
/// content against its hash, the chain from the oldest exported record through the spine
/// and tombstones to the signed checkpoint, and the signatures. If `expected_public_key` is
/// given (obtained out of band), the manifest's key must equal it.
pub fn verify_export(
    dir: &Path,
    expected_public_key: Option<&[u8; 32]>,
) -> Result<ExportVerification> {
    let mpath = dir.join(MANIFEST);
    let text = std::fs::read(&mpath).map_err(|e| ArchiveError::io(&mpath, e))?;
    let manifest: ExportManifest =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("manifest.json: {e}")))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(invalid(format!(
            "unknown manifest version {:?}",
            manifest.version
        )));
    }
    let public_key = hex32(&manifest.public_key, "public_key")?;
    if let Some(expected) = expected_public_key
        && expected != &public_key
    {
        return Err(invalid("the manifest's public key is not the expected one"));
    }
    let cp = &manifest.checkpoint;
    if !hash::verify_checkpoint_signature(cp, &public_key) {
        return Err(invalid("checkpoint signature is invalid"));
    }

    // Files.
    let mut file_digests = HashMap::new();
    for (name, digest) in &manifest.files {
        if name.contains("..") || name.starts_with('/') {
            return Err(invalid(format!("unsafe file name {name:?}")));
        }
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| ArchiveError::io(&path, e))?;
        if hex::encode(Sha256::digest(&bytes)) != *digest {
            return Err(invalid(format!(
                "{name}: SHA-256 does not match the manifest"
            )));
        }
        file_digests.insert(name.as_str(), bytes);
    }
    let jsonl = file_digests
        .get(RECORDS)
        .ok_or_else(|| invalid("records.jsonl is not listed in the manifest"))?;
    let mut records = Vec::new();
    for (i, line) in jsonl.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let r: Record = serde_json::from_slice(line)
            .map_err(|e| invalid(format!("records.jsonl line {}: {e}", i + 1)))?;
        records.push(r);
    }
    if records.len() != manifest.records.len() {
        return Err(invalid(
            "records.jsonl and the manifest list different records",
        ));
    }
    for (r, m) in records.iter().zip(&manifest.records) {
        if r.seq != m.seq
            || hex::encode(r.hash) != m.hash
            || hex::encode(r.prev_hash) != m.prev_hash
        {
            return Err(invalid(format!(
                "record {}: differs from the manifest entry",
                r.seq
            )));
        }
        if manifest.format == ExportFormat::Eml {
            let name = m
                .file
                .as_deref()
                .ok_or_else(|| invalid(format!("record {}: no eml file", r.seq)))?;
            if !file_digests.contains_key(name) {
                return Err(invalid(format!("record {}: {name} is not listed", r.seq)));
            }
        }
    }
    if records.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err(invalid("records are not in ascending seq order"));
    }

    // The chain.
    let Some(first) = records.first() else {
        return Ok(ExportVerification {
            records: 0,
            checkpoint_seq: cp.seq,
            public_key: manifest.public_key,
        });
    };
    let by_seq: HashMap<u64, &Record> = records.iter().map(|r| (r.seq, r)).collect();
    let tombs: HashMap<u64, &Tombstone> = manifest
        .tombstones
        .iter()
        .map(|t| (t.first_seq, t))
        .collect();
    let mut running = first.prev_hash;
    let mut expected = first.seq;
    let mut seen = 0usize;
    let mut spine = manifest.spine.iter().peekable();
    loop {
        if let Some(t) = tombs.get(&expected) {
            if !hash::verify_tombstone_signature(t, &public_key) {
                return Err(invalid(format!(
                    "tombstone {}..={}: bad signature",
                    t.first_seq, t.last_seq
                )));
            }
            if t.prev_hash != running || t.last_seq < t.first_seq {
                return Err(invalid(format!(
                    "tombstone {}..={}: does not link",
                    t.first_seq, t.last_seq
                )));
            }
            running = t.last_hash;
            expected = t.last_seq + 1;
            if expected > cp.seq {
                break;
            }
            continue;
        }
        let Some((seq, digest_hex)) = spine.next() else {
            break;
        };
        if *seq != expected {
            return Err(invalid(format!("spine skips from {expected} to {seq}")));
        }
        let digest = hex32(digest_hex, "spine digest")?;
        if let Some(r) = by_seq.get(seq) {
            if Fields::of(&r.record).digest() != digest {
                return Err(invalid(format!(
                    "record {seq}: content does not match its digest"
                )));
            }
            if r.prev_hash != running {
                return Err(invalid(format!("record {seq}: prev_hash does not link")));
            }
        }
        running = hash::chain_hash(*seq, &running, &digest);
        if let Some(r) = by_seq.get(seq) {
            if r.hash != running {
                return Err(invalid(format!("record {seq}: hash does not match")));
            }
            seen += 1;
        }
        expected += 1;
        if expected > cp.seq {
            break;
        }
    }
    if spine.next().is_some() {
        return Err(invalid("spine continues past the checkpoint"));
    }
    if expected != cp.seq + 1 || running != cp.hash {
        return Err(invalid(format!(
            "the chain does not reach the signed checkpoint (seq {})",
            cp.seq
        )));
    }
    if seen != records.len() {
        return Err(invalid("some exported records are not on the spine"));
    }
    Ok(ExportVerification {
        records: seen as u64,
        checkpoint_seq: cp.seq,
        public_key: manifest.public_key,
    })
}
