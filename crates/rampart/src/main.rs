//! The `rampart` binary: command line, configuration, and the wiring of concrete backends
//! (SQLite store, rustls certificate) into the server. The only crate that uses `anyhow`.

mod config;
mod setup;

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

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

fn main() -> std::process::ExitCode {
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
