//! An XML stream over any byte stream: framed reads with limits and timeouts, buffered writes,
//! and closing with a stream error (always after our stream header, as RFC 6120 §4.9 asks).

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_proto::{Element, StreamError, StreamErrorCondition, ns, stream};
use rampart_xml::{Event, Framer, Limits, XmlError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("peer closed the stream")]
    StreamEnd,
    #[error("XML: {0}")]
    Xml(#[from] XmlError),
    /// We must close the stream with this error.
    #[error("stream error {0:?}")]
    Stream(StreamErrorCondition, Option<String>),
}

impl ConnError {
    pub fn stream(c: StreamErrorCondition) -> Self {
        ConnError::Stream(c, None)
    }

    /// The stream error to send for this failure, if one is owed.
    pub fn to_stream_error(&self) -> Option<StreamError> {
        match self {
            ConnError::Xml(e) => {
                let condition = StreamErrorCondition::parse(e.condition()).unwrap_or(StreamErrorCondition::NotWellFormed);
                Some(StreamError { condition, text: Some(e.to_string()) })
            }
            ConnError::Stream(c, text) => Some(StreamError { condition: *c, text: text.clone() }),
            _ => None,
        }
    }
}

/// Size of one read: a whole TLS record's plaintext.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The read buffer, one per worker thread instead of one per connection: a read only
    /// needs it during a single poll (a pending read has read nothing), so idle connections
    /// hold no read buffer at all.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// One XML stream in one direction pair over `io`.
pub struct XmlConn<S> {
    pub io: S,
    pub framer: Framer,
    /// Bytes queued for writing; released after each flush so idle connections hold none.
    wbuf: Vec<u8>,
    pub header_sent: bool,
    /// When the currently buffered, incomplete stanza started (slowloris guard).
    partial_since: Option<Instant>,
    stanza_timeout: Duration,
    domain: String,
    /// The stream's default namespace (`jabber:client`; `jabber:server` for federation).
    stream_ns: &'static str,
    /// The `id` of the stream header we sent last (server dialback keys are bound to it).
    pub stream_id: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> XmlConn<S> {
    pub fn new(io: S, limits: Limits, stanza_timeout: Duration, domain: &str) -> Self {
        XmlConn {
            io,
            framer: Framer::new(limits),
            wbuf: Vec::new(),
            header_sent: false,
            partial_since: None,
            stanza_timeout,
            domain: domain.to_owned(),
            stream_ns: ns::CLIENT,
            stream_id: String::new(),
        }
    }

    /// Make this a server-to-server stream: our header declares `jabber:server`. Stanzas
    /// are still queued as `jabber:client` elements: written inside a `jabber:server`
    /// stream they carry no `xmlns`, so the peer reads them in its own namespace.
    pub fn server_stream(mut self) -> Self {
        self.stream_ns = ns::SERVER;
        self
    }

    /// Take the byte stream back (for STARTTLS). Fails if the peer sent bytes after the
    /// request that the framer already buffered (RFC 6120 §5.4.3.3: that is an attack).
    pub fn into_inner(self) -> Result<S, ConnError> {
        if self.framer.buffered() > 0 {
            return Err(ConnError::stream(StreamErrorCondition::PolicyViolation));
        }
        Ok(self.io)
    }

    /// Next framed event, reading as needed. Enforces the stanza completion timeout.
    pub async fn next_event(&mut self) -> Result<Event, ConnError> {
        loop {
            if let Some(ev) = self.framer.next_event()? {
                self.partial_since = None;
                return Ok(ev);
            }
            self.note_partial();
            let n = match self.partial_deadline() {
                Some(deadline) => match tokio::time::timeout_at(deadline, self.fill()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(ConnError::stream(StreamErrorCondition::ConnectionTimeout)),
                },
                None => self.fill().await?,
            };
            if n == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// Read once from the socket into the framer; `Ok(0)` at end of stream. Cancel-safe.
    async fn fill(&mut self) -> std::io::Result<usize> {
        // Between stanzas nothing is buffered: give the framer's memory back while we wait.
        self.framer.release_idle();
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        READ_BUF.with(|buf| {
            // Not re-entered: `poll_read` of a socket or TLS stream does not call back here.
            let mut buf = buf.borrow_mut();
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.framer.feed(rb.filled());
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }

    fn note_partial(&mut self) {
        if self.framer.buffered() > 0 {
            self.partial_since.get_or_insert_with(Instant::now);
        } else {
            self.partial_since = None;
        }
    }

    /// Deadline by which the buffered partial stanza must be complete, if one is buffered.
    pub fn partial_deadline(&self) -> Option<Instant> {
        self.partial_since.map(|t| t + self.stanza_timeout)
    }

    /// Read once into the framer (for use inside `select!`; cancel-safe). Ok(false) on EOF.
    pub async fn read_some(&mut self) -> Result<bool, ConnError> {
        Ok(self.fill().await? != 0)
    }

    /// Drain one complete event from already-buffered bytes, tracking partial stanzas.
    pub fn poll_buffered(&mut self) -> Result<Option<Event>, ConnError> {
        match self.framer.next_event()? {
            Some(ev) => {
                self.partial_since = None;
                Ok(Some(ev))
            }
            None => {
                self.note_partial();
                Ok(None)
            }
        }
    }

    /// Queue our stream header.
    pub fn queue_header(&mut self, to: Option<&str>) {
        let id = format!("{:016x}", rand::random::<u64>());
        self.wbuf.extend_from_slice(stream::stream_header(self.stream_ns, &self.domain, to, &id, "en").as_bytes());
        self.stream_id = id;
        self.header_sent = true;
    }

    /// Queue a top-level element (stanza or nonza) in a `jabber:client` stream.
    pub fn queue(&mut self, el: &Element) {
        el.write_to(&mut self.wbuf, ns::CLIENT);
    }

    /// Bytes queued but not yet written.
    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Write everything queued.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf = Vec::new();
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Forget what is queued but not yet written (a flush was abandoned part way: what
    /// follows must not repeat its first bytes).
    pub fn discard_unwritten(&mut self) {
        self.wbuf = Vec::new();
    }

    pub async fn send(&mut self, el: &Element) -> Result<(), ConnError> {
        self.queue(el);
        self.flush().await
    }

    /// Close the stream: optional stream error, `</stream:stream>`, then TLS close_notify/FIN.
    /// Best effort, bounded in time: a peer that does not read cannot hold us.
    pub async fn close(&mut self, error: Option<StreamError>) {
        if !self.header_sent {
            self.queue_header(None);
        }
        if let Some(e) = error {
            self.queue(&Element::from(e));
        }
        self.wbuf.extend_from_slice(stream::STREAM_CLOSE.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.flush().await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}
