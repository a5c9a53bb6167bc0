//! The `rampart` binary: command line, configuration, and the wiring of concrete backends
//! (SQLite store, rustls certificate) into the server. The only crate that uses `anyhow`.

mod admin;
mod bosh;
mod config;
mod federation;
mod push;
mod setup;
mod upload;
mod websocket;

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

/// mimalloc: per-stanza element trees are allocated on one thread and freed on another;
/// glibc malloc spent ~30% of server CPU on that under load (perf, docs/benchmarks.md).
/// The `system-alloc` feature leaves it out, for heap profilers that interpose malloc.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rampart: a secure enterprise XMPP server.
#[derive(Parser)]
#[command(name = "rampart", version, about)]
struct Cli {
    /// Configuration file (TOML). Default: ./rampart.toml if present, else built-in defaults.
    #[arg(long, global = true, env = "RAMPART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage accounts (works while the server runs).
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Scan files with the configured engines (YARA rules, ClamAV); exit 1 if any is malicious.
    Scan {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Accounts quarantined by threat defense.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Security events (blocks, quarantines, releases).
    #[command(subcommand)]
    Events(EventsCommand),
    /// The compliance archive.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Federation (server-to-server).
    #[command(subcommand)]
    S2s(S2sCommand),
    /// Push notification registrations of mobile devices (XEP-0357).
    #[command(subcommand)]
    Push(PushCommand),
}

#[derive(Subcommand)]
enum PushCommand {
    /// Registrations (account, app server, node), of one account or of all.
    List {
        /// Only this account.
        jid: Option<String>,
        /// One JSON object per registration a line.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account's registration with an app server (one node, or all of them).
    Remove { jid: String, service: String, node: Option<String> },
}

#[derive(Subcommand)]
enum S2sCommand {
    /// Every peer link with its direction, TLS and authentication state, and queue depth.
    Status {
        /// One JSON object per remote domain a line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// List quarantined accounts with the rule and reason.
    List,
    /// Release an account: it may send again.
    Release { jid: String },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Security events, newest first.
    List {
        /// Only events newer than this (30m, 24h, 7d, or a time).
        #[arg(long)]
        since: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Walk the hash chain, checkpoints and tombstones; report the first broken record.
    Verify,
    /// Full-text and field search, newest first.
    Search {
        /// Words that must all occur in the body (omit for field-only search).
        query: Option<String>,
        #[command(flatten)]
        filter: admin::ArchiveFilter,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Export records for eDiscovery, with a manifest that lets anyone verify the chain.
    Export {
        /// jsonl or eml.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Words that must occur in the body.
        #[arg(long)]
        text: Option<String>,
        #[command(flatten)]
        filter: admin::ArchiveFilter,
    },
    /// Check an export directory on its own: every record's hash, the chain links, the file
    /// digests, and the Ed25519 signature of the covering checkpoint.
    VerifyExport {
        dir: PathBuf,
        /// The archive's public key (hex, from archive-signing.pub) to require; without it
        /// the key in the manifest is used, which proves integrity but not origin.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Legal holds: suspend retention for what they cover.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Apply retention now: delete whole segments older than the given age (signed tombstones remain).
    Retention {
        #[arg(long)]
        older_than: String,
    },
}

#[derive(Subcommand)]
enum HoldCommand {
    /// Add a hold on an account, a peer, words and/or a time range.
    Add {
        /// Case reference or requester.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        text: Option<String>,
        #[command(flatten)]
        filter: admin::ArchiveFilter,
    },
    List,
    Release { id: i64 },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account.
    Add {
        /// The account's JID (`alice@example.com`, or just `alice` for the configured domain).
        jid: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List accounts, one JID per line.
    List,
    /// Delete an account and everything it owns.
    Remove { jid: String },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PasswordArgs {
    /// The password (visible in the process list; prefer --password-stdin).
    #[arg(long)]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArgs {
    fn read(&self) -> Result<String> {
        let pw = match &self.password {
            Some(p) => p.clone(),
            None => {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the password from standard input")?;
                s.lines().next().unwrap_or("").to_owned()
            }
        };
        if pw.is_empty() {
            bail!("the password must not be empty");
        }
        Ok(pw)
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print what is wrong.
    Check,
}

/// No transparent huge pages for this process. mimalloc asks for them on its arenas
/// (`MADV_HUGEPAGE`), so touching 4 KiB of a fresh region can make 2 MiB resident: with 2000
/// idle connections that was ~3.5 KiB of RSS per connection and ~23 MiB at start
/// (docs/benchmarks.md). Same effect as `MIMALLOC_ALLOW_THP=0`, without the environment.
#[cfg(all(target_os = "linux", not(feature = "system-alloc")))]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and only sets a flag on this process.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(all(target_os = "linux", not(feature = "system-alloc"))))]
fn disable_transparent_huge_pages() {}

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let cfg = config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            setup::check(&cfg)?;
            println!("ok: {} is valid (domain {})", cfg.source, cfg.domain);
            Ok(())
        }
        Command::Serve => runtime()?.block_on(setup::serve(cfg)),
        Command::Scan { files } => {
            let infected = runtime()?.block_on(admin::scan(&cfg, &files))?;
            if infected {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Quarantine(QuarantineCommand::List) => runtime()?.block_on(admin::quarantine_list(&cfg)),
        Command::Quarantine(QuarantineCommand::Release { jid }) => runtime()?.block_on(admin::quarantine_release(&cfg, &jid)),
        Command::S2s(S2sCommand::Status { json }) => runtime()?.block_on(federation::status(&cfg, json)),
        Command::Push(PushCommand::List { jid, json }) => runtime()?.block_on(push::list(&cfg, jid.as_deref(), json)),
        Command::Push(PushCommand::Remove { jid, service, node }) => {
            runtime()?.block_on(push::remove(&cfg, &jid, &service, node.as_deref()))
        }
        Command::Events(EventsCommand::List { since, json, limit }) => {
            runtime()?.block_on(admin::events_list(&cfg, since.as_deref(), json, limit))
        }
        Command::Archive(cmd) => runtime()?.block_on(async {
            match cmd {
                ArchiveCommand::Verify => {
                    if !admin::archive_verify(&cfg).await? {
                        std::process::exit(1);
                    }
                    Ok(())
                }
                ArchiveCommand::Search { query, filter, json } => admin::archive_search(&cfg, query, &filter, json).await,
                ArchiveCommand::Export { format, out, text, filter } => admin::archive_export(&cfg, &format, &out, text, &filter).await,
                ArchiveCommand::VerifyExport { dir, public_key } => {
                    if !admin::verify_export(&dir, public_key.as_deref())? {
                        std::process::exit(1);
                    }
                    Ok(())
                }
                ArchiveCommand::Hold(HoldCommand::Add { reason, text, filter }) => admin::hold_add(&cfg, reason, text, &filter).await,
                ArchiveCommand::Hold(HoldCommand::List) => admin::hold_list(&cfg).await,
                ArchiveCommand::Hold(HoldCommand::Release { id }) => admin::hold_release(&cfg, id).await,
                ArchiveCommand::Retention { older_than } => admin::retention_run(&cfg, &older_than).await,
            }
        }),
        Command::User(cmd) => runtime()?.block_on(async move {
            let users = setup::Users::open(&cfg).await?;
            match cmd {
                UserCommand::Add { jid, password } => users.add(&jid, &password.read()?).await,
                UserCommand::List => {
                    for j in users.list().await? {
                        println!("{j}");
                    }
                    Ok(())
                }
                UserCommand::Remove { jid } => users.remove(&jid).await,
                UserCommand::Passwd { jid, password } => users.passwd(&jid, &password.read()?).await,
            }
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
