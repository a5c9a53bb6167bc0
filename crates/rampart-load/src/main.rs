//! `rampart-load`: an XMPP load generator that speaks real XMPP over TLS (STARTTLS or direct
//! TLS, SCRAM/PLAIN, bind, presence) to any server, and reports throughput, latency
//! percentiles, login rates, errors, and the server's and its own CPU and memory use.

mod proto;
mod report;
mod stats;
mod workload;
mod xmpp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rampart_sasl::Mechanism;
use rustls_pki_types::ServerName;

use workload::{Env, IdleOpts, LoginsOpts, Offered, PairsOpts};

/// Drive any XMPP server with authenticated TLS connections and measure it.
///
/// Accounts `{user-prefix}1..={users}@DOMAIN` with password `--password` must exist (the
/// `register` workload creates them on servers that allow in-band registration).
#[derive(Parser)]
#[command(name = "rampart-load", version, about)]
struct Cli {
    #[command(flatten)]
    g: Global,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Args)]
struct Global {
    /// Server address (host:port). Default: 127.0.0.1:5222, or :5223 with --direct-tls.
    #[arg(long, global = true)]
    server: Option<String>,
    /// XMPP domain of the accounts (also the TLS server name unless --tls-name).
    #[arg(long, global = true, default_value = "localhost")]
    domain: String,
    /// Name to verify the server certificate against (default: the domain).
    #[arg(long, global = true)]
    tls_name: Option<String>,
    /// Direct TLS (XEP-0368) instead of STARTTLS.
    #[arg(long, global = true)]
    direct_tls: bool,
    /// Trust this certificate (PEM): the server's self-signed certificate or its CA.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Accept any server certificate (throwaway test servers only).
    #[arg(long, global = true)]
    insecure: bool,
    /// Allow TLS session resumption (off by default: every login is a full handshake).
    #[arg(long, global = true)]
    tls_resume: bool,
    /// Number of accounts available (user1..userN); connections beyond it reuse accounts
    /// with distinct resources.
    #[arg(long, global = true, default_value_t = 100)]
    users: usize,
    #[arg(long, global = true, default_value = "user")]
    user_prefix: String,
    #[arg(long, global = true, default_value = "password")]
    password: String,
    /// Force a SASL mechanism (default: the strongest offered, -PLUS on TLS 1.3).
    #[arg(long, global = true)]
    mechanism: Option<String>,
    /// PID of the server process: its CPU time and RSS are sampled from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Logins started per second while opening connections (0 = as fast as possible).
    #[arg(long, global = true, default_value_t = 0.0)]
    ramp: f64,
    /// Logins in progress at once while opening connections.
    #[arg(long, global = true, default_value_t = 32)]
    login_concurrency: usize,
    /// Timeout of each network wait, in seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    timeout: f64,
    /// Derive each account's SCRAM keys on every login instead of once per run. Real clients
    /// cache them (RFC 5802 §5.1); without the cache the generator spends a PBKDF2 per
    /// login, about as much CPU as the server's side of the login.
    #[arg(long, global = true)]
    no_scram_cache: bool,
    /// Spread connections over this many source addresses 127.0.0.1.. (for > ~28k
    /// connections, when ephemeral ports run out). 0 = let the kernel choose.
    #[arg(long, global = true, default_value_t = 0)]
    sources: u8,
    /// Generator worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// A name for this run in the report (e.g. the server under test and its variant, such as
    /// "rampart threat-defense=on").
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Print the report as one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Exit with status 2 if any error was counted (for CI smoke runs).
    #[arg(long, global = true)]
    strict: bool,
}

#[derive(Subcommand)]
enum Workload {
    /// 1:1 messages flat out: msg/s delivered and server CPU-µs per message.
    Flood {
        #[command(flatten)]
        p: PairArgs,
        /// Messages in flight per pair at most.
        #[arg(long, default_value_t = 64)]
        window: u64,
    },
    /// Fixed offered load: latency percentiles.
    Latency {
        #[command(flatten)]
        p: PairArgs,
        /// Total offered messages per second.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
    },
    /// K idle authenticated connections: server RSS per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to wait after the last login before sampling RSS.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Seconds to keep the connections open after that.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
    /// Logins per second (TCP + TLS + SASL + bind + presence, then close).
    Logins {
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Concurrent login loops.
        #[arg(long, default_value_t = 16)]
        workers: usize,
    },
    /// Create the accounts by in-band registration (XEP-0077), where the server allows it.
    Register,
}

#[derive(Args)]
struct PairArgs {
    /// Sender/receiver pairs (2 connections each).
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds to wait for messages still in flight at the end.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Body length in bytes (the timestamp is padded to it).
    #[arg(long, default_value_t = 64)]
    body: usize,
    /// Write every measured message's send time and latency to this file, one
    /// "SENT_NS LATENCY_NS" line each, in send order (for when in the run the slow ones fell:
    /// bench/latency_clusters.py).
    #[arg(long)]
    dump_latencies: Option<PathBuf>,
}

impl PairArgs {
    fn opts(&self, offered: Offered) -> PairsOpts {
        PairsOpts {
            pairs: self.pairs.max(1),
            duration: secs(self.duration),
            warmup: secs(self.warmup),
            drain: secs(self.drain),
            body_len: self.body,
            offered,
            dump_latencies: self.dump_latencies.clone(),
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn target(g: &Global) -> Result<xmpp::Target> {
    let default_port = if g.direct_tls { 5223 } else { 5222 };
    let server = g
        .server
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{default_port}"));
    let addr: SocketAddr = server
        .to_socket_addrs()
        .with_context(|| format!("--server {server}"))?
        .next()
        .with_context(|| format!("--server {server}: no address"))?;
    let name = g.tls_name.clone().unwrap_or_else(|| g.domain.clone());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| anyhow::anyhow!("TLS name {name:?}: {e}"))?;
    let mechanism = match &g.mechanism {
        None => None,
        Some(m) => Some(Mechanism::from_name(m).with_context(|| {
            format!(
                "--mechanism {m}: one of {:?}",
                Mechanism::ALL.map(|m| m.name())
            )
        })?),
    };
    let sources = (0..g.sources)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i.saturating_add(1))))
        .collect();
    Ok(xmpp::Target {
        addr,
        domain: g.domain.clone(),
        server_name,
        direct_tls: g.direct_tls,
        tls: Arc::new(xmpp::tls_config(g.ca.as_deref(), g.insecure, g.tls_resume)?),
        password: g.password.clone(),
        mechanism,
        timeout: secs(g.timeout),
        sources,
        key_cache: (!g.no_scram_cache).then(|| Arc::new(rampart_sasl::ScramKeyCache::new())),
    })
}

/// Raise the open-files limit as far as allowed; returns the new soft limit.
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("rampart-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    let g = &cli.g;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let nofile = raise_nofile();
    if let Workload::Idle { connections, .. } = &cli.workload
        && (*connections as u64) + 64 > nofile
    {
        bail!("open-files limit {nofile} is too low for {connections} connections");
    }
    let env = Env {
        target: Arc::new(target(g)?),
        users: g.users.max(1),
        user_prefix: g.user_prefix.clone(),
        server_pid: g.server_pid,
        label: g.label.clone(),
        ramp: g.ramp,
        concurrency: g.login_concurrency.max(1),
        cores,
        run: run_id(),
    };
    if let Some(pid) = g.server_pid
        && stats::sample_process(&pid.to_string()).is_none()
    {
        bail!("--server-pid {pid}: cannot read /proc/{pid}/stat and status");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(g.threads.unwrap_or(cores).max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    workload::now_ns();
    let report = rt.block_on(async {
        match &cli.workload {
            Workload::Flood { p, window } => {
                workload::pairs(
                    &env,
                    &p.opts(Offered::FlatOut {
                        window: (*window).max(1),
                    }),
                )
                .await
            }
            Workload::Latency { p, rate } => {
                workload::pairs(&env, &p.opts(Offered::Rate(rate.max(0.001)))).await
            }
            Workload::Idle {
                connections,
                settle,
                hold,
            } => {
                workload::idle(
                    &env,
                    &IdleOpts {
                        connections: *connections,
                        settle: secs(*settle),
                        hold: secs(*hold),
                    },
                )
                .await
            }
            Workload::Logins { duration, workers } => {
                workload::logins(
                    &env,
                    &LoginsOpts {
                        duration: secs(*duration),
                        workers: *workers,
                    },
                )
                .await
            }
            Workload::Register => workload::register(&env).await,
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    if g.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.human());
    }
    Ok(!(g.strict && report.error_count > 0))
}

/// A run id that differs between runs (time and pid mixed), to tell this run's messages from
/// offline messages left by earlier runs.
fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
}
