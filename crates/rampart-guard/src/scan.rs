//! Signature engines: the [`Scanner`] trait, [`YaraScanner`] (YARA-X, in process) and
//! [`ClamdScanner`] (ClamAV's daemon over its INSTREAM protocol).
//!
//! `ClamdScanner` is the one place in this crate that opens sockets; it is an engine adapter
//! the binary constructs from a configured address, like any other [`Scanner`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::GuardError;

/// A signature engine.
#[async_trait]
pub trait Scanner: Send + Sync {
    /// Short engine name for logs and evidence (`yara`, `clamd`).
    fn name(&self) -> &str;
    /// Scan bytes: `Ok(Some(signature))` on a match, `Ok(None)` if clean.
    async fn scan(&self, data: &[u8]) -> Result<Option<String>, GuardError>;

    /// Scan on the calling thread, at once, when the engine can (in-process, short input):
    /// the same answer as [`Scanner::scan`], without a boxed future. `None` if the engine
    /// must go through [`Scanner::scan`].
    fn scan_now(&self, _data: &[u8]) -> Option<Result<Option<String>, GuardError>> {
        None
    }
}

/// Inputs at most this long are scanned on the calling task; longer ones on tokio's blocking
/// pool (YARA-X is CPU-bound and does not yield).
const INLINE_SCAN_MAX: usize = 64 * 1024;

type YaraScannerRef<'a> = yara_x::Scanner<'a>;

self_cell::self_cell!(
    /// A YARA-X scanner together with the rules it borrows.
    struct CachedScanner {
        owner: Arc<yara_x::Rules>,
        #[not_covariant]
        dependent: YaraScannerRef,
    }
);

/// Most rule sets a thread keeps a scanner for (old ones are evicted first).
const SCANNERS_PER_THREAD: usize = 4;

thread_local! {
    /// Reusable scanners of this thread, by [`YaraScanner`] id. A YARA-X `Scanner` is
    /// `!Send` and costs about half a millisecond to create (a WebAssembly instance), so
    /// each thread keeps its own.
    static SCANNERS: std::cell::RefCell<Vec<(u64, CachedScanner)>> = const { std::cell::RefCell::new(Vec::new()) };
}

static NEXT_YARA_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// YARA rules compiled with YARA-X (pure Rust: memory-safe on hostile input).
///
/// Each rule source is compiled in its own namespace (its name), so two files may define
/// rules with the same identifier. Private rules never report. The reported signature is the
/// matching rule's identifier. Scanners are reused per thread; inputs above 64 KiB are
/// scanned on tokio's blocking pool.
pub struct YaraScanner {
    rules: Arc<yara_x::Rules>,
    id: u64,
    timeout: Duration,
    count: usize,
}

impl YaraScanner {
    /// Compile rule sources `(name, source)`. Errors name the source and the position.
    pub fn new(sources: Vec<(String, String)>) -> Result<Self, GuardError> {
        let mut compiler = yara_x::Compiler::new();
        for (name, src) in &sources {
            compiler.new_namespace(name);
            compiler
                .add_source(yara_x::SourceCode::from(src.as_str()).with_origin(name.clone()))
                .map_err(|e| GuardError::Rules(format!("{name}: {e}")))?;
        }
        let rules = compiler.build();
        let count = rules.iter().count();
        Ok(YaraScanner {
            rules: Arc::new(rules),
            id: NEXT_YARA_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            timeout: Duration::from_secs(5),
            count,
        })
    }

    /// YARA-X's own per-scan time limit (it interrupts rule evaluation; its granularity is
    /// about a second). Default 5 s. The guard's `scan_timeout_ms` bounds the wait as well.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Number of rules compiled.
    pub fn rule_count(&self) -> usize {
        self.count
    }

    fn scan_sync(
        rules: &Arc<yara_x::Rules>,
        id: u64,
        timeout: Duration,
        data: &[u8],
    ) -> Result<Option<String>, GuardError> {
        let run = |scanner: &mut yara_x::Scanner<'_>| -> Result<Option<String>, GuardError> {
            let results = scanner.scan(data).map_err(|e| match e {
                yara_x::ScanError::Timeout => GuardError::Timeout,
                e => GuardError::Engine(format!("yara: {e}")),
            })?;
            Ok(results
                .matching_rules()
                .next()
                .map(|r| r.identifier().to_owned()))
        };
        // Take this thread's scanner out of the cache while scanning (so a re-entrant call
        // cannot find it borrowed), and put it back afterwards.
        let cached = SCANNERS.with(|c| {
            let mut c = c.borrow_mut();
            // Scanners of dropped rule sets (only the cache still holds the rules) go first.
            c.retain(|(_, s)| Arc::strong_count(s.borrow_owner()) > 1);
            c.iter()
                .position(|(i, _)| *i == id)
                .map(|p| c.swap_remove(p).1)
        });
        let mut cached = cached.unwrap_or_else(|| {
            CachedScanner::new(rules.clone(), |r| {
                let mut s = yara_x::Scanner::new(r);
                s.set_timeout(timeout);
                s
            })
        });
        let out = cached.with_dependent_mut(|_, scanner| run(scanner));
        SCANNERS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= SCANNERS_PER_THREAD {
                c.remove(0);
            }
            c.push((id, cached));
        });
        out
    }
}

#[async_trait]
impl Scanner for YaraScanner {
    fn name(&self) -> &str {
        "yara"
    }

    fn scan_now(&self, data: &[u8]) -> Option<Result<Option<String>, GuardError>> {
        (data.len() <= INLINE_SCAN_MAX)
            .then(|| Self::scan_sync(&self.rules, self.id, self.timeout, data))
    }

    async fn scan(&self, data: &[u8]) -> Result<Option<String>, GuardError> {
        if data.len() <= INLINE_SCAN_MAX {
            return Self::scan_sync(&self.rules, self.id, self.timeout, data);
        }
        let rules = self.rules.clone();
        let (id, timeout) = (self.id, self.timeout);
        let owned = data.to_vec();
        tokio::task::spawn_blocking(move || Self::scan_sync(&rules, id, timeout, &owned))
            .await
            .map_err(|e| GuardError::Engine(format!("yara task: {e}")))?
    }
}

/// Where clamd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddr {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl ClamdAddr {
    /// Parse `tcp:HOST:PORT` or `unix:/path/to/clamd.ctl`.
    pub fn parse(s: &str) -> Result<Self, GuardError> {
        if let Some(rest) = s.strip_prefix("tcp:") {
            let port_ok = rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(GuardError::Config(format!(
                    "clamd address {s:?}: expected tcp:HOST:PORT"
                )));
            }
            let host_port = rest.to_owned();
            return Ok(ClamdAddr::Tcp(host_port));
        }
        if let Some(rest) = s.strip_prefix("unix:")
            && !rest.is_empty()
        {
            return Ok(ClamdAddr::Unix(rest.into()));
        }
        Err(GuardError::Config(format!(
            "clamd address {s:?}: expected tcp:HOST:PORT or unix:/path"
        )))
    }
}

/// ClamAV's daemon, through the `zINSTREAM` command (one connection per scan).
///
/// Data goes in chunks of at most [`ClamdScanner::CHUNK`] bytes; every connect, write and
/// read is bounded by the I/O timeout; the reply is read up to its NUL terminator or
/// [`ClamdScanner::MAX_REPLY`] bytes. When the data exceeds clamd's `StreamMaxLength`,
/// clamd replies `INSTREAM size limit exceeded. ERROR` and closes the socket, possibly while
/// we are still writing: the reply is read anyway and reported as
/// [`GuardError::Engine`] (fail closed), never as clean.
pub struct ClamdScanner {
    addr: ClamdAddr,
    io_timeout: Duration,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl ClamdScanner {
    /// Bytes per INSTREAM chunk.
    pub const CHUNK: usize = 64 * 1024;
    /// Longest reply accepted.
    pub const MAX_REPLY: usize = 4096;

    /// A scanner for `tcp:HOST:PORT` or `unix:/path`, with a 10 s I/O timeout.
    pub fn new(addr: &str) -> Result<Self, GuardError> {
        Ok(ClamdScanner {
            addr: ClamdAddr::parse(addr)?,
            io_timeout: Duration::from_secs(10),
        })
    }

    /// Bound every connect, write and read by `t`.
    pub fn with_io_timeout(mut self, t: Duration) -> Self {
        self.io_timeout = t;
        self
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, GuardError> {
        let fut = async {
            Ok::<Box<dyn Stream>, std::io::Error>(match &self.addr {
                ClamdAddr::Tcp(hp) => {
                    Box::new(tokio::net::TcpStream::connect(hp.as_str()).await?) as Box<dyn Stream>
                }
                #[cfg(unix)]
                ClamdAddr::Unix(p) => {
                    Box::new(tokio::net::UnixStream::connect(p).await?) as Box<dyn Stream>
                }
                #[cfg(not(unix))]
                ClamdAddr::Unix(_) => {
                    return Err(std::io::Error::other("unix sockets unsupported"));
                }
            })
        };
        tokio::time::timeout(self.io_timeout, fut)
            .await
            .map_err(|_| GuardError::Timeout)?
            .map_err(|e| GuardError::Engine(format!("clamd connect: {e}")))
    }

    /// Send `PING`; true if clamd answers `PONG`.
    pub async fn ping(&self) -> Result<bool, GuardError> {
        let mut s = self.connect().await?;
        self.io(s.write_all(b"zPING\0")).await?;
        let reply = self.read_reply(&mut s).await?;
        Ok(reply == "PONG")
    }

    async fn io<T>(
        &self,
        f: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, GuardError> {
        tokio::time::timeout(self.io_timeout, f)
            .await
            .map_err(|_| GuardError::Timeout)?
            .map_err(|e| GuardError::Engine(format!("clamd: {e}")))
    }

    async fn read_reply(&self, s: &mut Box<dyn Stream>) -> Result<String, GuardError> {
        let mut buf = Vec::with_capacity(128);
        let mut chunk = [0u8; 512];
        loop {
            let n = self.io(s.read(&mut chunk)).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.contains(&0) {
                break;
            }
            if buf.len() > Self::MAX_REPLY {
                return Err(GuardError::Engine("clamd: reply too long".into()));
            }
        }
        if let Some(p) = buf.iter().position(|&b| b == 0) {
            buf.truncate(p);
        }
        let reply = String::from_utf8_lossy(&buf).trim().to_owned();
        if reply.is_empty() {
            return Err(GuardError::Engine(
                "clamd: connection closed without a reply".into(),
            ));
        }
        Ok(reply)
    }
}

/// Interpret an INSTREAM reply.
fn parse_reply(reply: &str) -> Result<Option<String>, GuardError> {
    let body = reply
        .strip_prefix("stream:")
        .map(str::trim)
        .unwrap_or(reply);
    if body == "OK" {
        return Ok(None);
    }
    if let Some(sig) = body.strip_suffix(" FOUND") {
        let sig = sig.trim();
        return Ok(Some(if sig.is_empty() {
            "clamd:unknown".to_owned()
        } else {
            sig.to_owned()
        }));
    }
    Err(GuardError::Engine(format!("clamd: {reply}")))
}

#[async_trait]
impl Scanner for ClamdScanner {
    fn name(&self) -> &str {
        "clamd"
    }

    async fn scan(&self, data: &[u8]) -> Result<Option<String>, GuardError> {
        let mut s = self.connect().await?;
        let sent: Result<(), GuardError> = async {
            self.io(s.write_all(b"zINSTREAM\0")).await?;
            for chunk in data.chunks(Self::CHUNK) {
                let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX).to_be_bytes();
                self.io(s.write_all(&len)).await?;
                self.io(s.write_all(chunk)).await?;
            }
            self.io(s.write_all(&[0, 0, 0, 0])).await?;
            self.io(s.flush()).await?;
            Ok(())
        }
        .await;
        // clamd may have replied (size limit) and closed while we wrote: read what it said.
        match (sent, self.read_reply(&mut s).await) {
            (_, Ok(reply)) => parse_reply(&reply),
            (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply("stream: OK").unwrap(), None);
        assert_eq!(
            parse_reply("stream: Eicar-Signature FOUND")
                .unwrap()
                .as_deref(),
            Some("Eicar-Signature")
        );
        assert!(parse_reply("INSTREAM size limit exceeded. ERROR").is_err());
        assert!(parse_reply("garbage").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            ClamdAddr::parse("tcp:127.0.0.1:3310").unwrap(),
            ClamdAddr::Tcp("127.0.0.1:3310".into())
        );
        assert_eq!(
            ClamdAddr::parse("tcp:[::1]:3310").unwrap(),
            ClamdAddr::Tcp("[::1]:3310".into())
        );
        assert_eq!(
            ClamdAddr::parse("unix:/run/clamd.ctl").unwrap(),
            ClamdAddr::Unix("/run/clamd.ctl".into())
        );
        for bad in [
            "",
            "tcp:",
            "tcp:host",
            "tcp:host:x",
            "unix:",
            "127.0.0.1:3310",
        ] {
            assert!(ClamdAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
