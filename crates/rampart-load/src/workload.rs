//! The workloads: `flood` (1:1 messages flat out), `latency` (fixed offered rate), `idle`
//! (many idle authenticated connections), `logins` (TLS + SASL + bind per second) and
//! `register` (create the test accounts over XEP-0077 on servers that allow it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rampart_xml::{Event, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::proto::{self, Stamp};
use crate::report::{self, Errors, J, Report};
use crate::stats::{Latency, Pacer, Snapshot, Usage};
use crate::xmpp::{self, Failure, Session, Target, Tls};

/// Nanoseconds on the generator's monotonic clock (epoch: first call).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What every workload shares.
pub struct Env {
    pub target: Arc<Target>,
    /// Accounts `{prefix}1..={users}` exist with the target's password.
    pub users: usize,
    pub user_prefix: String,
    pub server_pid: Option<u32>,
    pub label: String,
    /// Logins started per second while opening connections (0: as fast as possible).
    pub ramp: f64,
    /// Logins in progress at once while opening connections.
    pub concurrency: usize,
    pub cores: usize,
    /// Random per run, embedded in every body.
    pub run: u32,
}

impl Env {
    /// The account for connection `i` (0-based), cycling through the accounts.
    fn user(&self, i: usize) -> String {
        format!("{}{}", self.user_prefix, i % self.users.max(1) + 1)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(self.server_pid)
    }
}

// ---------------------------------------------------------------------------------------
// Opening many connections

/// Result of opening a batch of connections.
struct Opened {
    sessions: Vec<Option<Session>>,
    errors: Errors,
    wall: Duration,
    connect: Latency,
    login: Latency,
    mechanisms: std::collections::BTreeMap<String, u64>,
}

impl Opened {
    fn ok(&self) -> usize {
        self.sessions.iter().filter(|s| s.is_some()).count()
    }

    fn report(&self, r: &mut Report) {
        let ok = self.ok();
        let secs = self.wall.as_secs_f64().max(1e-9);
        let c = self.connect.summary();
        let l = self.login.summary();
        r.line(format!(
            "opened {ok}/{} connections in {:.2} s: {:.0} logins/s; mechanisms {:?}",
            self.sessions.len(),
            secs,
            ok as f64 / secs,
            self.mechanisms
        ));
        r.line(report::latency_human("  TCP+TLS time", &c));
        r.line(report::latency_human("  login time (TCP to presence)", &l));
        r.field(
            "connections",
            J::obj([
                ("attempted", J::Int(self.sessions.len() as i64)),
                ("ok", J::Int(ok as i64)),
                ("wall_s", J::Num(secs)),
                ("logins_per_s", J::Num(ok as f64 / secs)),
                ("tcp_tls", report::latency_json(&c)),
                ("login", report::latency_json(&l)),
                ("errors", self.errors.json()),
            ]),
        );
    }
}

/// Log in every `(user, resource)`, ramped at `env.ramp` per second, `env.concurrency` at a
/// time. Indexes in the result match `specs`.
async fn open_all(env: &Env, specs: Vec<(String, String)>) -> Opened {
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(env.concurrency.max(1)));
    let mut pacer = Pacer::new(env.ramp, Duration::ZERO);
    let mut handles = Vec::with_capacity(specs.len());
    for (i, (user, resource)) in specs.into_iter().enumerate() {
        if env.ramp > 0.0 {
            while pacer.take_due(start.elapsed().as_nanos() as u64) == 0 {
                let due = start + Duration::from_nanos(pacer.next_due_ns());
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let t = env.target.clone();
        handles.push(tokio::spawn(async move {
            let r = xmpp::login(&t, &user, &resource, i).await;
            drop(permit);
            r
        }));
    }
    let mut out = Opened {
        sessions: Vec::with_capacity(handles.len()),
        errors: Errors::default(),
        wall: Duration::ZERO,
        connect: Latency::new(),
        login: Latency::new(),
        mechanisms: Default::default(),
    };
    for h in handles {
        match h.await {
            Ok(Ok(s)) => {
                out.connect.record_ns(s.connect_time.as_nanos() as u64);
                out.login.record_ns(s.login_time.as_nanos() as u64);
                *out.mechanisms.entry(s.mechanism.name().into()).or_default() += 1;
                out.sessions.push(Some(s));
            }
            Ok(Err(f)) => {
                if out.errors.total() < 3 {
                    eprintln!("login failed: {f}");
                }
                out.errors.add(format!("login: {}", f.kind));
                out.sessions.push(None);
            }
            Err(e) => {
                out.errors.add(format!("login task: {e}"));
                out.sessions.push(None);
            }
        }
    }
    out.wall = start.elapsed();
    out
}

// ---------------------------------------------------------------------------------------
// Live connections: a reader task per connection, the write half kept by the workload

/// Counters shared by all readers.
#[derive(Default)]
struct Shared {
    run: u32,
    /// Messages of this run received, by all readers.
    delivered: AtomicU64,
    /// Only messages sent at or after this instant (now_ns) enter the latency histogram.
    measure_from_ns: AtomicU64,
    /// Keep every measured message's (send time, latency) too (`--dump-latencies`).
    keep_samples: bool,
}

/// Per pair: what the receiver got, so the sender can keep a bounded window in flight.
#[derive(Default)]
struct PairState {
    received: AtomicU64,
    notify: Notify,
}

/// What a reader saw.
#[derive(Default)]
struct ReaderOut {
    latency: Latency,
    /// (send time, latency) in ns of each measured message, if `Shared::keep_samples`.
    samples: Vec<(u64, u64)>,
    received: u64,
    /// Stamped bodies from another run (offline messages from an earlier run).
    stale: u64,
    errors: Errors,
}

struct Live {
    writer: WriteHalf<Tls>,
    reader: JoinHandle<ReaderOut>,
    jid: String,
}

fn go_live(
    s: Session,
    shared: Arc<Shared>,
    pair: Option<Arc<PairState>>,
    stop: watch::Receiver<bool>,
) -> Live {
    let jid = s.jid.clone();
    let (stream, framer) = s.into_parts();
    let (r, w) = tokio::io::split(stream);
    let reader = tokio::spawn(read_loop(r, framer, shared, pair, stop));
    Live {
        writer: w,
        reader,
        jid,
    }
}

async fn read_loop(
    mut r: ReadHalf<Tls>,
    mut framer: Framer,
    shared: Arc<Shared>,
    pair: Option<Arc<PairState>>,
    mut stop: watch::Receiver<bool>,
) -> ReaderOut {
    let mut out = ReaderOut::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        loop {
            match framer.next_event() {
                Ok(Some(Event::Stanza(e))) => {
                    if e.name == "message" {
                        if e.attr("type") == Some("error") {
                            out.errors.add("message bounced (type=error)");
                        } else if let Some(st) = proto::message_stamp(&e) {
                            if st.run != shared.run {
                                out.stale += 1;
                                continue;
                            }
                            let now = now_ns();
                            if st.sent_ns >= shared.measure_from_ns.load(Ordering::Relaxed) {
                                out.latency.record_ns(now.saturating_sub(st.sent_ns));
                                if shared.keep_samples {
                                    out.samples.push((st.sent_ns, now.saturating_sub(st.sent_ns)));
                                }
                            }
                            out.received += 1;
                            shared.delivered.fetch_add(1, Ordering::Relaxed);
                            if let Some(p) = &pair {
                                p.received.fetch_add(1, Ordering::Release);
                                p.notify.notify_one();
                            }
                        }
                    } else if e.is("error", rampart_xml::NS_STREAM) {
                        if !*stop.borrow() {
                            out.errors.add(format!(
                                "stream-error {}",
                                proto::stream_error_condition(&e)
                            ));
                        }
                        return out;
                    }
                }
                Ok(Some(Event::StreamEnd)) => {
                    if !*stop.borrow() {
                        out.errors.add("stream closed by server");
                    }
                    return out;
                }
                Ok(Some(Event::StreamStart(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    out.errors.add(format!("xml {}", e.condition()));
                    return out;
                }
            }
        }
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    if !*stop.borrow() {
                        out.errors.add("connection lost");
                    }
                    return out;
                }
                Ok(n) => framer.feed(&buf[..n]),
            },
            _ = stop.changed() => return out,
        }
    }
}

/// Close every connection (`</stream:stream>` + close_notify), stop the readers after a short
/// grace period and collect what they saw.
async fn close_all(lives: Vec<Live>, stop: watch::Sender<bool>, timeout: Duration) -> ReaderOut {
    let _ = stop.send(true);
    let mut readers = Vec::with_capacity(lives.len());
    let mut closers = Vec::with_capacity(lives.len());
    for mut l in lives {
        readers.push(l.reader);
        closers.push(tokio::spawn(async move {
            xmpp::close(&mut l.writer, timeout).await;
            l.writer
        }));
    }
    let mut writers = Vec::with_capacity(closers.len());
    for c in closers {
        if let Ok(w) = c.await {
            writers.push(w);
        }
    }
    let mut all = ReaderOut::default();
    for r in readers {
        if let Ok(o) = r.await {
            all.latency.merge(&o.latency);
            all.samples.extend_from_slice(&o.samples);
            all.received += o.received;
            all.stale += o.stale;
            all.errors.merge(&o.errors);
        }
    }
    drop(writers);
    all
}

// ---------------------------------------------------------------------------------------
// flood and latency

/// How senders pace themselves.
#[derive(Clone, Copy, Debug)]
pub enum Offered {
    /// As fast as possible, at most `window` messages in flight per pair.
    FlatOut { window: u64 },
    /// A fixed total rate (messages per second) spread evenly over the pairs.
    Rate(f64),
}

pub struct PairsOpts {
    pub pairs: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub body_len: usize,
    pub offered: Offered,
    /// Where to write every measured message's (send time, latency), if anywhere.
    pub dump_latencies: Option<std::path::PathBuf>,
}

struct SenderOut {
    sent: u64,
    lag: Latency,
    error: Option<String>,
}

/// What one sender needs besides its connection.
struct SenderCfg {
    /// The receiver's full JID.
    to: String,
    pair: Arc<PairState>,
    offered: Offered,
    pace: Pacer,
    body_len: usize,
    run: u32,
    stop: Arc<AtomicBool>,
}

async fn sender(mut w: WriteHalf<Tls>, cfg: SenderCfg) -> (WriteHalf<Tls>, SenderOut) {
    let SenderCfg {
        to,
        pair,
        offered: opts_offered,
        mut pace,
        body_len,
        run,
        stop,
    } = cfg;
    let mut out = SenderOut {
        sent: 0,
        lag: Latency::new(),
        error: None,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let start_ns = now_ns();
    while !stop.load(Ordering::Relaxed) {
        let n = match opts_offered {
            Offered::FlatOut { window } => {
                let in_flight = out.sent - pair.received.load(Ordering::Acquire);
                if in_flight >= window {
                    let _ = tokio::time::timeout(Duration::from_millis(50), pair.notify.notified())
                        .await;
                    continue;
                }
                (window - in_flight).min(64)
            }
            Offered::Rate(_) => {
                let due = pace.next_due_ns();
                let now = now_ns() - start_ns;
                if now < due {
                    tokio::time::sleep(Duration::from_nanos(due - now)).await;
                    continue;
                }
                out.lag.record_ns(now - due);
                pace.take_due(now)
            }
        };
        buf.clear();
        for _ in 0..n {
            let stamp = Stamp {
                run,
                seq: out.sent,
                sent_ns: now_ns(),
            };
            proto::write_message(&mut buf, &to, stamp, body_len);
            out.sent += 1;
        }
        let res = async {
            w.write_all(&buf).await?;
            w.flush().await
        }
        .await;
        if let Err(e) = res {
            out.error = Some(format!("send: {e}"));
            break;
        }
    }
    (w, out)
}

/// `--dump-latencies`' file: "SENT_NS LATENCY_NS" lines in send order.
fn samples_text(samples: &mut [(u64, u64)]) -> String {
    samples.sort_unstable();
    use std::fmt::Write as _;
    let mut out = String::with_capacity(samples.len() * 24);
    for (sent, latency) in samples.iter() {
        let _ = writeln!(out, "{sent} {latency}");
    }
    out
}

/// `flood` and `latency`: M sender→receiver pairs on 2M connections.
pub async fn pairs(env: &Env, o: &PairsOpts) -> Report {
    let name = match o.offered {
        Offered::FlatOut { .. } => "flood",
        Offered::Rate(_) => "latency",
    };
    let mut r = Report::new(name, &env.label);
    let specs: Vec<(String, String)> = (0..o.pairs)
        .flat_map(|i| {
            [
                (env.user(2 * i), format!("s{i}-{:x}", env.run)),
                (env.user(2 * i + 1), format!("r{i}-{:x}", env.run)),
            ]
        })
        .collect();
    let opened = open_all(env, specs).await;
    opened.report(&mut r);
    let mut errors = opened.errors.clone();

    let shared = Arc::new(Shared {
        run: env.run,
        measure_from_ns: AtomicU64::new(u64::MAX),
        keep_samples: o.dump_latencies.is_some(),
        ..Shared::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_send = Arc::new(AtomicBool::new(false));
    let mut lives = Vec::new();
    let mut senders = Vec::new();
    let mut sessions = opened.sessions.into_iter();
    let per_pair_rate = match o.offered {
        Offered::Rate(total) => total / o.pairs.max(1) as f64,
        Offered::FlatOut { .. } => 0.0,
    };
    let mut pair_index = 0usize;
    while let (Some(s), Some(rcv)) = (sessions.next(), sessions.next()) {
        let (Some(s), Some(rcv)) = (s, rcv) else {
            continue;
        };
        let pair = Arc::new(PairState::default());
        let receiver = go_live(rcv, shared.clone(), Some(pair.clone()), stop_rx.clone());
        let send_conn = go_live(s, shared.clone(), None, stop_rx.clone());
        // Spread the pairs' schedules evenly over one interval of the total rate.
        let offset = match o.offered {
            Offered::Rate(total) => Duration::from_secs_f64(pair_index as f64 / total),
            Offered::FlatOut { .. } => Duration::ZERO,
        };
        let to = receiver.jid.clone();
        lives.push(receiver);
        let Live {
            writer,
            reader,
            jid,
        } = send_conn;
        senders.push((
            tokio::spawn(sender(
                writer,
                SenderCfg {
                    to,
                    pair,
                    offered: o.offered,
                    pace: Pacer::new(per_pair_rate, offset),
                    body_len: o.body_len,
                    run: env.run,
                    stop: stop_send.clone(),
                },
            )),
            reader,
            jid,
        ));
        pair_index += 1;
    }
    if pair_index == 0 {
        r.line("no complete pair could log in: nothing measured");
        r.errors(&errors);
        r.error_count += 1;
        return r;
    }
    if let Offered::Rate(total) = o.offered {
        r.line(format!(
            "{pair_index} pairs, offered {total:.0} msg/s ({per_pair_rate:.1} per pair), body {} bytes",
            o.body_len
        ));
    } else {
        r.line(format!(
            "{pair_index} pairs flat out, body {} bytes",
            o.body_len
        ));
    }

    tokio::time::sleep(o.warmup).await;
    shared.measure_from_ns.store(now_ns(), Ordering::Relaxed);
    let d0 = shared.delivered.load(Ordering::Relaxed);
    let s0 = env.snapshot();
    let t0 = Instant::now();
    tokio::time::sleep(o.duration).await;
    let d1 = shared.delivered.load(Ordering::Relaxed);
    let s1 = env.snapshot();
    let wall = t0.elapsed().as_secs_f64();
    stop_send.store(true, Ordering::Relaxed);

    let mut sent = 0u64;
    let mut lag = Latency::new();
    for (h, reader, jid) in senders {
        match h.await {
            Ok((writer, so)) => {
                sent += so.sent;
                lag.merge(&so.lag);
                if let Some(e) = so.error {
                    errors.add(e);
                }
                lives.push(Live {
                    writer,
                    reader,
                    jid,
                });
            }
            Err(e) => errors.add(format!("sender task: {e}")),
        }
    }
    // Drain: wait for what is still in flight.
    let drain_end = Instant::now() + o.drain;
    while shared.delivered.load(Ordering::Relaxed) < sent && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_total = shared.delivered.load(Ordering::Relaxed);
    let mut seen = close_all(lives, stop_tx, env.target.timeout).await;
    errors.merge(&seen.errors);
    if let Some(path) = &o.dump_latencies
        && let Err(e) = std::fs::write(path, samples_text(&mut seen.samples))
    {
        errors.add(format!("--dump-latencies {}: {e}", path.display()));
    }
    let missing = sent.saturating_sub(delivered_total);
    errors.add_n("missing messages", missing);

    let window_msgs = d1 - d0;
    let throughput = window_msgs as f64 / wall;
    let usage = Usage::between(&s0, &s1, wall);
    let cpu_us_per_msg = usage
        .server_cpu_secs
        .filter(|_| window_msgs > 0)
        .map(|c| c * 1e6 / window_msgs as f64);
    let gen_us_per_msg = usage
        .generator_cpu_secs
        .filter(|_| window_msgs > 0)
        .map(|c| c * 1e6 / window_msgs as f64);
    let lat = seen.latency.summary();
    r.line(format!(
        "delivered {window_msgs} messages in {wall:.1} s: {throughput:.0} msg/s \
         (sent {sent}, delivered {delivered_total} in total, {missing} missing, {} stale from earlier runs)",
        seen.stale
    ));
    if let Some(c) = cpu_us_per_msg {
        r.line(format!("server CPU per delivered message: {c:.1} µs"));
    }
    if let Some(g) = gen_us_per_msg {
        r.line(format!(
            "generator CPU per delivered message: {g:.1} µs (sending + receiving)"
        ));
    }
    r.line(report::latency_human("latency (send to receive)", &lat));
    if let Offered::Rate(_) = o.offered {
        let l = lag.summary();
        r.line(report::latency_human(
            "sender lag behind schedule (timer granularity 1 ms)",
            &l,
        ));
        if let Offered::Rate(total) = o.offered {
            // Sends are open-loop: falling behind shows as a lower achieved rate.
            let achieved = sent as f64 / (o.warmup + o.duration).as_secs_f64().max(1e-9);
            if achieved < 0.95 * total {
                r.line(format!(
                    "note: the generator sent only {achieved:.0} msg/s of the {total:.0} offered"
                ));
            }
        }
    }
    for l in report::usage_human(&usage, env.cores) {
        r.line(l);
    }
    r.field("pairs", J::Int(pair_index as i64));
    r.field(
        "flat_out",
        J::Bool(matches!(o.offered, Offered::FlatOut { .. })),
    );
    r.field("body_bytes", J::Int(o.body_len as i64));
    if let Offered::Rate(total) = o.offered {
        r.field("offered_msgs_per_s", J::Num(total));
        r.field("sender_lag", report::latency_json(&lag.summary()));
    }
    r.field("msgs_per_s", J::Num(throughput));
    r.field("window_msgs", J::Int(window_msgs as i64));
    r.field("sent", J::Int(sent as i64));
    r.field("delivered", J::Int(delivered_total as i64));
    r.field("missing", J::Int(missing as i64));
    r.field("stale", J::Int(seen.stale as i64));
    r.field("server_cpu_us_per_msg", J::opt_num(cpu_us_per_msg));
    r.field("generator_cpu_us_per_msg", J::opt_num(gen_us_per_msg));
    r.field("latency", report::latency_json(&lat));
    r.field("usage", report::usage_json(&usage));
    r.errors(&errors);
    r
}

// ---------------------------------------------------------------------------------------
// idle

pub struct IdleOpts {
    pub connections: usize,
    /// Wait after the last login before measuring (lets the server settle / collect garbage).
    pub settle: Duration,
    pub hold: Duration,
}

/// `idle`: K authenticated connections that do nothing; server RSS per connection.
pub async fn idle(env: &Env, o: &IdleOpts) -> Report {
    let mut r = Report::new("idle", &env.label);
    let s0 = env.snapshot();
    let t0 = Instant::now();
    let specs = (0..o.connections)
        .map(|i| (env.user(i), format!("idle{i}-{:x}", env.run)))
        .collect();
    let opened = open_all(env, specs).await;
    opened.report(&mut r);
    let ok = opened.ok();
    let shared = Arc::new(Shared {
        run: env.run,
        ..Shared::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let lives: Vec<Live> = opened
        .sessions
        .into_iter()
        .flatten()
        .map(|s| go_live(s, shared.clone(), None, stop_rx.clone()))
        .collect();
    tokio::time::sleep(o.settle).await;
    let s1 = env.snapshot();
    let usage = Usage::between(&s0, &s1, t0.elapsed().as_secs_f64());
    tokio::time::sleep(o.hold).await;
    let s2 = env.snapshot();
    let still_up = lives.iter().filter(|l| !l.reader.is_finished()).count();
    let seen = close_all(lives, stop_tx, env.target.timeout).await;
    let mut errors = opened.errors.clone();
    errors.merge(&seen.errors);

    let per_conn = usage
        .rss_delta_kib()
        .filter(|_| ok > 0)
        .map(|d| d as f64 / ok as f64);
    let per_conn_held = match (s0.server, s2.server) {
        (Some(a), Some(b)) if ok > 0 => Some((b.rss_kib as f64 - a.rss_kib as f64) / ok as f64),
        _ => None,
    };
    r.line(format!(
        "{ok} idle authenticated connections ({still_up} still up after holding {:.0} s)",
        o.hold.as_secs_f64()
    ));
    if let Some(p) = per_conn {
        r.line(format!(
            "server RSS per connection: {p:.1} KiB ({:.1} KiB after the hold)",
            per_conn_held.unwrap_or(f64::NAN)
        ));
    }
    for l in report::usage_human(&usage, env.cores) {
        r.line(l);
    }
    r.field("idle_connections", J::Int(ok as i64));
    r.field("still_up", J::Int(still_up as i64));
    r.field("rss_kib_per_conn", J::opt_num(per_conn));
    r.field("rss_kib_per_conn_after_hold", J::opt_num(per_conn_held));
    r.field("usage", report::usage_json(&usage));
    r.errors(&errors);
    r
}

// ---------------------------------------------------------------------------------------
// logins

pub struct LoginsOpts {
    pub duration: Duration,
    pub workers: usize,
}

/// `logins`: full logins (TCP, TLS, SASL, bind, presence, close) per second.
pub async fn logins(env: &Env, o: &LoginsOpts) -> Report {
    let mut r = Report::new("logins", &env.label);
    let next = Arc::new(AtomicU64::new(0));
    let s0 = env.snapshot();
    let t0 = Instant::now();
    let deadline = t0 + o.duration;
    let mut handles = Vec::new();
    for _ in 0..o.workers.max(1) {
        let next = next.clone();
        let t = env.target.clone();
        let users = env.users.max(1);
        let prefix = env.user_prefix.clone();
        let run = env.run;
        handles.push(tokio::spawn(async move {
            let mut lat = Latency::new();
            let mut errors = Errors::default();
            let mut ok = 0u64;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let user = format!("{prefix}{}", i % users + 1);
                let started = Instant::now();
                match xmpp::login(&t, &user, &format!("login{i}-{run:x}"), i).await {
                    Ok(s) => {
                        let (mut stream, _) = s.into_parts();
                        xmpp::close(&mut stream, t.timeout).await;
                        lat.record_ns(started.elapsed().as_nanos() as u64);
                        ok += 1;
                    }
                    Err(f) => {
                        errors.add(format!("login: {}", f.kind));
                        // Don't spin on a server that refuses everything.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (ok, lat, errors)
        }));
    }
    let mut ok = 0;
    let mut lat = Latency::new();
    let mut errors = Errors::default();
    for h in handles {
        if let Ok((n, l, e)) = h.await {
            ok += n;
            lat.merge(&l);
            errors.merge(&e);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let s1 = env.snapshot();
    let usage = Usage::between(&s0, &s1, wall);
    let rate = ok as f64 / wall;
    let cpu_ms = usage
        .server_cpu_secs
        .filter(|_| ok > 0)
        .map(|c| c * 1e3 / ok as f64);
    let gen_ms = usage
        .generator_cpu_secs
        .filter(|_| ok > 0)
        .map(|c| c * 1e3 / ok as f64);
    r.line(format!(
        "{ok} logins in {wall:.1} s with {} workers: {rate:.0} logins/s",
        o.workers
    ));
    if let Some(c) = cpu_ms {
        r.line(format!("server CPU per login: {c:.2} ms"));
    }
    if let Some(g) = gen_ms {
        let scram = if env.target.key_cache.is_some() {
            "SCRAM keys cached per account, as clients do"
        } else {
            "the client side of SCRAM runs PBKDF2 every time"
        };
        r.line(format!("generator CPU per login: {g:.2} ms ({scram})"));
    }
    r.line(report::latency_human(
        "login time (TCP to presence)",
        &lat.summary(),
    ));
    for l in report::usage_human(&usage, env.cores) {
        r.line(l);
    }
    r.field("logins", J::Int(ok as i64));
    r.field("logins_per_s", J::Num(rate));
    r.field("server_cpu_ms_per_login", J::opt_num(cpu_ms));
    r.field("generator_cpu_ms_per_login", J::opt_num(gen_ms));
    r.field("login", report::latency_json(&lat.summary()));
    r.field("usage", report::usage_json(&usage));
    r.errors(&errors);
    r
}

// ---------------------------------------------------------------------------------------
// register

/// `register`: create `{prefix}1..={users}` over XEP-0077 (Prosody, ejabberd).
pub async fn register(env: &Env) -> Report {
    let mut r = Report::new("register", &env.label);
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(env.concurrency.max(1)));
    let mut handles = Vec::new();
    for i in 0..env.users {
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let t = env.target.clone();
        let user = env.user(i);
        handles.push(tokio::spawn(async move {
            let res = xmpp::register(&t, &user, i).await;
            drop(permit);
            res
        }));
    }
    let (mut created, mut existed) = (0i64, 0i64);
    let mut errors = Errors::default();
    for h in handles {
        match h.await {
            Ok(Ok(xmpp::Registered::Created)) => created += 1,
            Ok(Ok(xmpp::Registered::Exists)) => existed += 1,
            Ok(Err(Failure { kind, detail })) => {
                if errors.total() < 3 {
                    eprintln!("register failed: {kind}: {detail}");
                }
                errors.add(kind)
            }
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    r.line(format!(
        "registered {created}, already there {existed}, in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    r.field("created", J::Int(created));
    r.field("existed", J::Int(existed));
    r.errors(&errors);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumped_samples_are_in_send_order() {
        let mut samples = vec![(30, 5), (10, 7_000_000), (20, 9)];
        assert_eq!(samples_text(&mut samples), "10 7000000\n20 9\n30 5\n");
        assert_eq!(samples_text(&mut []), "");
    }
}
