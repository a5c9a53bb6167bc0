//! Walking the chain: recompute every hash, follow prev links and tombstone jumps, check
//! checkpoint and tombstone signatures and the stored head.

use std::collections::BTreeMap;

use crate::backend::ArchiveBackend;
use crate::error::Result;
use crate::hash::{self, GENESIS};
use crate::types::{Checkpoint, VerifyFailure, VerifyReport};

const PAGE: u32 = 4096;

fn fail(report: &mut VerifyReport, seq: u64, reason: impl Into<String>) {
    report.failure = Some(VerifyFailure {
        seq,
        reason: reason.into(),
    });
}

/// Check the checkpoints that name `seq`, where the chain hash is `hash`.
fn check_checkpoints_at(
    cps: &BTreeMap<u64, Vec<Checkpoint>>,
    seq: u64,
    hash: &[u8; 32],
    public_key: &[u8; 32],
    report: &mut VerifyReport,
) -> bool {
    for cp in cps.get(&seq).into_iter().flatten() {
        if !hash::verify_checkpoint_signature(cp, public_key) {
            fail(
                report,
                seq,
                format!(
                    "checkpoint at seq {seq} (time {}) has an invalid signature",
                    cp.at_ms
                ),
            );
            return false;
        }
        if &cp.hash != hash {
            fail(
                report,
                seq,
                format!("chain hash at seq {seq} differs from the signed checkpoint's"),
            );
            return false;
        }
        report.checkpoints_checked += 1;
    }
    true
}

/// Verify the whole chain. `extra` are trusted checkpoints from outside the database (e.g.
/// the last exported one); they are checked like stored ones.
pub(crate) async fn verify(
    backend: &dyn ArchiveBackend,
    public_key: &[u8; 32],
    extra: &[Checkpoint],
) -> Result<VerifyReport> {
    let tombstones = backend.tombstones().await?;
    let mut cps: BTreeMap<u64, Vec<Checkpoint>> = BTreeMap::new();
    for cp in backend
        .checkpoints()
        .await?
        .into_iter()
        .chain(extra.iter().cloned())
    {
        cps.entry(cp.seq).or_default().push(cp);
    }
    let (head_seq, head_hash) = backend.head().await?;

    let mut report = VerifyReport::default();
    let mut expected = 1u64;
    let mut running = GENESIS;
    if !check_checkpoints_at(&cps, 0, &GENESIS, public_key, &mut report) {
        return Ok(report);
    }
    let mut t_idx = 0usize;
    'walk: loop {
        if let Some(t) = tombstones.get(t_idx) {
            if t.first_seq < expected || t.last_seq < t.first_seq {
                fail(
                    &mut report,
                    t.first_seq,
                    format!(
                        "tombstone {}..={} overlaps the chain or is malformed",
                        t.first_seq, t.last_seq
                    ),
                );
                break;
            }
            if t.first_seq == expected {
                if !hash::verify_tombstone_signature(t, public_key) {
                    fail(
                        &mut report,
                        t.first_seq,
                        format!(
                            "tombstone {}..={} has an invalid signature",
                            t.first_seq, t.last_seq
                        ),
                    );
                    break;
                }
                if t.prev_hash != running {
                    fail(
                        &mut report,
                        t.first_seq,
                        format!(
                            "tombstone {}..={} does not link to the previous hash",
                            t.first_seq, t.last_seq
                        ),
                    );
                    break;
                }
                if !backend.rows(t.first_seq, t.last_seq, 1).await?.is_empty() {
                    fail(
                        &mut report,
                        t.first_seq,
                        format!(
                            "records exist inside tombstoned range {}..={}",
                            t.first_seq, t.last_seq
                        ),
                    );
                    break;
                }
                // Checkpoints inside the deleted range can only be checked for signature.
                for (_, list) in cps.range(t.first_seq..t.last_seq) {
                    for cp in list {
                        if !hash::verify_checkpoint_signature(cp, public_key) {
                            fail(
                                &mut report,
                                cp.seq,
                                format!("checkpoint at seq {} has an invalid signature", cp.seq),
                            );
                            break 'walk;
                        }
                        report.checkpoints_checked += 1;
                    }
                }
                running = t.last_hash;
                expected = t.last_seq.saturating_add(1);
                report.tombstones_checked += 1;
                report.last_seq = t.last_seq;
                report.last_hash = running;
                if !check_checkpoints_at(&cps, t.last_seq, &running, public_key, &mut report) {
                    break;
                }
                t_idx += 1;
                continue;
            }
        }
        let upto = tombstones.get(t_idx).map_or(u64::MAX, |t| t.first_seq - 1);
        let page = backend
            .rows(expected, upto.min(i64::MAX as u64), PAGE)
            .await?;
        if page.is_empty() {
            if tombstones.get(t_idx).is_some() {
                fail(
                    &mut report,
                    expected,
                    format!("record {expected} is missing"),
                );
            }
            break;
        }
        for row in page {
            let seq = u64::try_from(row.seq).unwrap_or(0);
            if seq != expected {
                fail(
                    &mut report,
                    expected,
                    format!("record {expected} is missing"),
                );
                break 'walk;
            }
            if row.prev_hash.as_slice() != running.as_slice() {
                fail(
                    &mut report,
                    seq,
                    format!("record {seq}: prev_hash does not match the previous record's hash"),
                );
                break 'walk;
            }
            let h = hash::chain_hash(seq, &running, &row.fields().digest());
            if row.hash.as_slice() != h.as_slice() {
                fail(
                    &mut report,
                    seq,
                    format!(
                        "record {seq}: content does not match its hash (altered field or hash)"
                    ),
                );
                break 'walk;
            }
            if let Err(why) = row.into_record() {
                fail(&mut report, seq, format!("record {seq}: malformed: {why}"));
                break 'walk;
            }
            running = h;
            expected += 1;
            report.records_checked += 1;
            report.last_seq = seq;
            report.last_hash = running;
            if !check_checkpoints_at(&cps, seq, &running, public_key, &mut report) {
                break 'walk;
            }
        }
    }
    if report.failure.is_some() {
        return Ok(report);
    }
    let last = report.last_seq;
    if let Some((&seq, list)) = cps.range(last + 1..).next() {
        let signed = list
            .iter()
            .any(|cp| hash::verify_checkpoint_signature(cp, public_key));
        let why = if signed {
            format!(
                "chain ends at seq {last} but a signed checkpoint covers seq {seq}: records were truncated"
            )
        } else {
            format!("checkpoint beyond the chain end (seq {seq}) has an invalid signature")
        };
        fail(&mut report, last + 1, why);
        return Ok(report);
    }
    if head_seq != last || head_hash != report.last_hash {
        fail(
            &mut report,
            last.min(head_seq) + 1,
            format!(
                "chain ends at seq {last} but the stored head is seq {head_seq}: records were truncated or the head was altered"
            ),
        );
    }
    Ok(report)
}
