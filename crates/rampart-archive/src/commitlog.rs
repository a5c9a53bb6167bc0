//! The commit log: the small append-only file that makes an append durable.
//!
//! A group commit is one frame appended to the log and synced (`fdatasync`): the batch's
//! records in their canonical encoding (the [`hash`](crate::hash) module's, the bytes their
//! digests cover), a few hundred bytes per record. The database (`archive.db`) receives the
//! same batches afterwards, from an applier thread (see [`crate::direct`]), in larger
//! transactions that are not synced one by one. Before, every group commit was an SQLite
//! transaction synced on its own: four or more 4 KiB pages (the record, its time index, the
//! segment, the chain head) written and flushed while every later record waited, and the
//! database's checkpoints and the index's writes queued in front of those flushes.
//!
//! # Files and frames
//! Two files beside the database, [`LOG_FILES`], written in turn. A file is written from
//! its start until it is [`SWITCH_AT`] long; then the writer moves to the other file, once
//! every record in that one is durable in the database (it keeps growing the current file
//! until then). A new file is filled with zeros to that length first, and frames overwrite
//! blocks the file already has, so a sync flushes data only, not the file system's
//! metadata. Each pass over a file has a new *generation*:
//!
//! ```text
//! frame   = "RCL1" || u64 generation || u32 payload length || u32 CRC-32 (payload) || payload
//! payload = u64 segment_max || u64 first_seq || prev_hash[32] || u32 count
//!           || count × canonical record encoding
//! ```
//! Integers are big-endian. Reading a file back stops at the first frame that is torn (bad
//! length or CRC), malformed, or of another generation than the file's first frame: what
//! follows is an older pass's leftovers.
//!
//! # Recovery
//! On open the log is read back and every batch the database lacks is applied to it, then
//! synced, before the archive takes appends; the records a crash caught between the log and
//! the database are therefore never lost, and their seqs and hashes are the ones the
//! delivered stanzas were stamped with. A log that does not continue the database's chain
//! (a gap, a different hash) is refused: the archive does not open.
//!
//! # One writer
//! The process that appends holds an exclusive lock on the first log file for as long as its
//! archive is open. Another process (the CLI beside a running server) reads, indexes and
//! signs checkpoints of what the database holds; an append there is refused while the lock
//! is held elsewhere.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::backend::StoredRow;
use crate::hash::Fields;
use crate::types::NewRecord;

/// The log's two files, inside the archive directory.
pub const LOG_FILES: [&str; 2] = ["archive-commit.0.log", "archive-commit.1.log"];
/// The writer moves to the other file once the current one is this long; new files are
/// written full of zeros to this length first (see [`preallocate`]).
pub(crate) const SWITCH_AT: u64 = 4 << 20;
const MAGIC: [u8; 4] = *b"RCL1";
/// Magic, generation, payload length, CRC.
const HEADER: usize = 4 + 8 + 4 + 4;
/// The send buffer kept between appends at most (a larger one is freed after its frame).
const KEEP_BUFFER: usize = 1 << 20;

/// One group commit as logged.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The segment size limit the batch was appended with (replay assigns segments alike).
    pub segment_max: u64,
    pub first_seq: u64,
    /// The chain hash before the batch's first record.
    pub prev: [u8; 32],
    pub records: Vec<NewRecord>,
}

impl Batch {
    pub(crate) fn last_seq(&self) -> u64 {
        self.first_seq + self.records.len() as u64 - 1
    }
}

/// Encode one frame into `out` (cleared first).
fn encode_frame(
    out: &mut Vec<u8>,
    generation: u64,
    segment_max: u64,
    first_seq: u64,
    prev: &[u8; 32],
    records: &[NewRecord],
) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&segment_max.to_be_bytes());
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(prev);
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        Fields::of(r).encode(out);
    }
    let len = u32::try_from(out.len() - HEADER).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&out[HEADER..]);
    out[12..16].copy_from_slice(&len.to_be_bytes());
    out[16..20].copy_from_slice(&crc.to_be_bytes());
}

/// A bounds-checked reader over a frame's payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let len = usize::try_from(self.u64()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn opt(&mut self) -> Option<Option<String>> {
        match self.take(1)?[0] {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }
    /// One record in the canonical encoding.
    fn record(&mut self) -> Option<NewRecord> {
        let at_ms = i64::from_be_bytes(self.take(8)?.try_into().ok()?);
        let row = StoredRow {
            at_ms,
            kind: self.str()?,
            direction: self.str()?,
            from: self.str()?,
            to: self.str()?,
            remote_domain: self.opt()?,
            stanza_id: self.opt()?,
            body: self.opt()?,
            stanza_xml: self.opt()?,
            verdict: self.str()?,
            verdict_rule: self.opt()?,
            verdict_reason: self.opt()?,
            meta_json: self.opt()?,
            prev_hash: vec![0; 32],
            hash: vec![0; 32],
            ..StoredRow::default()
        };
        row.into_record().ok().map(|r| r.record)
    }
}

fn decode_payload(payload: &[u8]) -> Option<Batch> {
    let mut c = Cursor(payload);
    let segment_max = c.u64()?;
    let first_seq = c.u64()?;
    let prev: [u8; 32] = c.take(32)?.try_into().ok()?;
    let count = c.u32()?;
    if first_seq == 0 || count == 0 {
        return None;
    }
    // Each record takes at least 8 bytes: a count beyond that is garbage, not an allocation.
    let mut records = Vec::with_capacity((count as usize).min(payload.len() / 8));
    for _ in 0..count {
        records.push(c.record()?);
    }
    c.0.is_empty().then_some(Batch {
        segment_max,
        first_seq,
        prev,
        records,
    })
}

/// The batches of one file's current generation, in the order written (see the module docs
/// for where reading stops), and that generation.
fn read_frames(data: &[u8]) -> (Option<u64>, Vec<Batch>) {
    let mut out = Vec::new();
    let mut generation = None;
    let mut at = 0usize;
    while let Some(header) = data.get(at..at + HEADER) {
        let g = u64::from_be_bytes(header[4..12].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(header[12..16].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_be_bytes(header[16..20].try_into().unwrap_or_default());
        if header[..4] != MAGIC || generation.is_some_and(|want| want != g) {
            break;
        }
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(batch) = decode_payload(payload) else { break };
        generation = Some(g);
        out.push(batch);
        at += HEADER + len;
    }
    (generation, out)
}

/// The writing side of the log (see the module docs).
#[derive(Debug)]
pub(crate) struct Log {
    files: [File; 2],
    active: usize,
    offset: u64,
    generation: u64,
    /// The newest seq in each file's current pass (0: nothing the database may lack).
    newest: [u64; 2],
    /// `fdatasync` each frame (off for throw-away test archives).
    sync: bool,
    buf: Vec<u8>,
}

impl Log {
    /// Open (creating) the log in `dir` and take its lock; `None` when another process holds
    /// it. Also returns every batch the files hold, by seq: the caller must have them all in
    /// the database, durably, before the first [`Log::append`], which starts a new
    /// generation at the start of the first file.
    pub(crate) fn open(dir: &Path, sync: bool) -> io::Result<Option<(Log, Vec<Batch>)>> {
        let open = |name: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(dir.join(name))
        };
        let files = [open(LOG_FILES[0])?, open(LOG_FILES[1])?];
        match files[0].try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut batches = Vec::new();
        let mut generation = 0;
        for mut f in &files {
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            let (g, b) = read_frames(&data);
            generation = generation.max(g.unwrap_or(0));
            batches.extend(b);
            // A file left long by a stretch when the database lagged is cut back.
            if f.metadata()?.len() > SWITCH_AT * 2 {
                f.set_len(SWITCH_AT)?;
            }
            if sync {
                preallocate(f)?;
            }
        }
        if sync {
            File::open(dir)?.sync_all()?;
        }
        batches.sort_by_key(|b| b.first_seq);
        let log = Log {
            files,
            active: 0,
            offset: 0,
            generation: generation + 1,
            newest: [0, 0],
            sync,
            buf: Vec::new(),
        };
        Ok(Some((log, batches)))
    }

    /// Whether the writer will want to move to the other file soon and it still holds
    /// records beyond `durable_seq` (the applier should sync its next commit).
    pub(crate) fn wants_durable(&self, durable_seq: u64) -> bool {
        self.offset >= SWITCH_AT / 2 && self.newest[1 - self.active] > durable_seq
    }

    /// Append one batch as a frame and sync it. `durable_seq`: every record up to it is
    /// durable in the database, so a file whose records all are may be written over. An
    /// error from the write leaves the log as it was (the next frame goes to the same
    /// place); an error from the sync means the file's state is unknown, and the caller must
    /// stop appending.
    pub(crate) fn append(
        &mut self,
        segment_max: u64,
        first_seq: u64,
        prev: &[u8; 32],
        records: &[NewRecord],
        durable_seq: u64,
    ) -> Result<(), LogError> {
        let other = 1 - self.active;
        if self.offset >= SWITCH_AT && self.newest[other] <= durable_seq {
            self.active = other;
            self.generation += 1;
            self.offset = 0;
            self.newest[other] = 0;
        }
        encode_frame(
            &mut self.buf,
            self.generation,
            segment_max,
            first_seq,
            prev,
            records,
        );
        let file = &self.files[self.active];
        file.write_all_at(&self.buf, self.offset)
            .map_err(LogError::Write)?;
        if self.sync {
            file.sync_data().map_err(LogError::Sync)?;
        }
        self.offset += self.buf.len() as u64;
        self.newest[self.active] = first_seq + records.len() as u64 - 1;
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// The newest seq the log in `dir` holds (0 if none), read without its lock: what a reader
/// in another process than the writer waits for the database to reach.
pub(crate) fn newest_seq(dir: &Path) -> io::Result<u64> {
    let mut newest = 0;
    for name in LOG_FILES {
        let data = match std::fs::read(dir.join(name)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let (_, batches) = read_frames(&data);
        newest = batches.iter().map(Batch::last_seq).fold(newest, u64::max);
    }
    Ok(newest)
}

/// Write zeros from the end of `f` up to [`SWITCH_AT`] and sync them (once per file, when
/// it is new): frames then overwrite blocks the file already has, so syncing one flushes
/// its data only. A sync that also has to record the file's growth commits the file
/// system's journal, and waits for whatever else is in it (measured: 10–12 ms every time the
/// database checkpointed, against 0.1 ms).
fn preallocate(f: &File) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut len = f.metadata()?.len();
    if len >= SWITCH_AT {
        return Ok(());
    }
    let zeros = vec![0u8; CHUNK];
    while len < SWITCH_AT {
        let n = (SWITCH_AT - len).min(CHUNK as u64) as usize;
        f.write_all_at(&zeros[..n], len)?;
        len += n as u64;
    }
    f.sync_all()
}

/// A failed [`Log::append`].
#[derive(Debug)]
pub(crate) enum LogError {
    /// Writing the frame failed; nothing changed.
    Write(io::Error),
    /// Syncing it failed; the log cannot be trusted any more.
    Sync(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::tests::rec;
    use crate::types::Verdict;

    fn records(n: usize, tag: &str) -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                body: Some(format!("{tag} {i}")),
                stanza_id: (i % 2 == 0).then(|| format!("id{i}")),
                verdict: if i % 3 == 0 {
                    Verdict::Blocked {
                        rule: "yara:eicar".into(),
                        reason: "malware".into(),
                    }
                } else {
                    Verdict::Delivered
                },
                ..rec()
            })
            .collect()
    }

    fn frame(generation: u64, first_seq: u64, recs: &[NewRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, generation, 100, first_seq, &[7; 32], recs);
        out
    }

    #[test]
    fn frames_round_trip() {
        let recs = records(5, "hello");
        let mut data = frame(3, 10, &recs);
        data.extend(frame(3, 15, &recs[..2]));
        let (g, batches) = read_frames(&data);
        assert_eq!(g, Some(3));
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].first_seq, 10);
        assert_eq!(batches[0].last_seq(), 14);
        assert_eq!(batches[0].segment_max, 100);
        assert_eq!(batches[0].prev, [7; 32]);
        assert_eq!(batches[0].records, recs);
        assert_eq!(batches[1].records, recs[..2]);
    }

    #[test]
    fn reading_stops_at_a_torn_stale_or_garbled_frame() {
        let recs = records(3, "x");
        let good = frame(5, 1, &recs);
        // Torn: the second frame cut short.
        let mut data = good.clone();
        let second = frame(5, 4, &recs);
        data.extend_from_slice(&second[..second.len() - 3]);
        assert_eq!(read_frames(&data).1.len(), 1);
        // Stale: an older generation's frame after the current one.
        let mut data = good.clone();
        data.extend(frame(4, 4, &recs));
        assert_eq!(read_frames(&data).1.len(), 1);
        // Garbled: one flipped payload byte fails the CRC.
        let mut data = good.clone();
        data.extend(second.clone());
        let at = good.len() + HEADER + 40;
        data[at] ^= 1;
        assert_eq!(read_frames(&data).1.len(), 1);
        // Zeros (a file's unwritten tail) and garbage end the file quietly.
        let mut data = good.clone();
        data.extend([0u8; 64]);
        assert_eq!(read_frames(&data).1.len(), 1);
        assert!(read_frames(&[0xff; 100]).1.is_empty());
        assert!(read_frames(&[]).1.is_empty());
        // A frame whose CRC matches but whose payload is malformed (a count far beyond
        // what it holds) ends the file too.
        let mut bad = Vec::new();
        encode_frame(&mut bad, 5, 100, 9, &[0; 32], &recs[..1]);
        bad[HEADER + 48..HEADER + 52].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32fast::hash(&bad[HEADER..]);
        bad[16..20].copy_from_slice(&crc.to_be_bytes());
        let mut data = good.clone();
        data.extend(bad);
        assert_eq!(read_frames(&data).1.len(), 1);
    }

    #[test]
    fn the_writer_takes_turns_and_only_overwrites_what_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, old) = Log::open(dir.path(), false).unwrap().unwrap();
        assert!(old.is_empty());
        // A second opener is refused while the first holds the lock.
        assert!(Log::open(dir.path(), false).unwrap().is_none());
        let big = records(1, &"y".repeat(600_000));
        let mut seq = 1;
        // Fill the first file past SWITCH_AT with nothing durable: the writer stays on it.
        while log.offset < SWITCH_AT {
            log.append(100, seq, &[0; 32], &big, 0).unwrap();
            seq += 1;
        }
        assert_eq!(log.active, 0);
        log.append(100, seq, &[0; 32], &big, 0).unwrap();
        seq += 1;
        assert_eq!(log.active, 1, "the second file holds nothing yet");
        let gen1 = log.generation;
        while log.offset < SWITCH_AT {
            log.append(100, seq, &[0; 32], &big, 0).unwrap();
            seq += 1;
        }
        // The first file's records are not durable: the writer keeps to the second file.
        assert!(log.wants_durable(0));
        log.append(100, seq, &[0; 32], &big, 0).unwrap();
        seq += 1;
        assert_eq!(log.active, 1);
        // Once they are, it moves back, in a new generation.
        let first_file_newest = log.newest[0];
        log.append(100, seq, &[0; 32], &big, first_file_newest).unwrap();
        assert_eq!((log.active, log.generation), (0, gen1 + 1));
        drop(log);
        // Reading back: the first file's new pass (one frame; the older pass's frames after
        // it are another generation) and the whole second file.
        let (_log, batches) = Log::open(dir.path(), false).unwrap().unwrap();
        let seqs: Vec<u64> = batches.iter().map(|b| b.first_seq).collect();
        let second_file: Vec<u64> = (first_file_newest + 1..seq).collect();
        assert_eq!(seqs, [second_file, vec![seq]].concat());
    }

    #[test]
    fn durable_logs_are_preallocated_and_read_back_past_the_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), true).unwrap().unwrap();
        for name in LOG_FILES {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert_eq!(len, SWITCH_AT);
        }
        log.append(100, 1, &[0; 32], &records(2, "z"), 0).unwrap();
        drop(log);
        let (_log, batches) = Log::open(dir.path(), true).unwrap().unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].records.len(), 2);
    }
}
