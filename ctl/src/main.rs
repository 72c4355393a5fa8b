//! rampartctl: the operator's command line over Rampart's gRPC management API.
//!
//! Exit codes, so scripts can branch on them:
//! 0 success, 1 other error, 2 usage, 3 invalid argument (the spec or a
//! flag is wrong), 4 not found, 5 conflict (already exists / failed
//! precondition), 6 rampartd unreachable, 7 not authenticated or permission
//! denied, 8 rate limited (retry later), 9 `check-sync` found drift.
//!
//! Connection settings come from flags, then the environment, then
//! `~/.config/rampart/ctl.toml`, then what a local rampartd left in its data
//! directory (its CA and bootstrap admin token), so on the controller host
//! `rampartctl get services` just works. Each command lives in its own
//! module under `cmd/`; this file only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cmd;
mod connect;
mod error;
mod input;
mod output;

use cmd::{
    agents::Agents, apply::Apply, audit::Audit, completion::CompletionShell, delete::Delete,
    devices::Devices, get::Get, rollback::Rollback, secrets::Secrets, sync::CheckSync, sync::Sync,
    tokens::Tokens, users::Users,
};
use connect::Connection;
use error::Failure;
use output::Output;

/// Manage Rampart services, devices, transactions, access and audit.
#[derive(Debug, Parser)]
#[command(name = "rampartctl", version, about)]
pub struct Cli {
    #[command(flatten)]
    connection: Connection,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables, times relative (`5m`, `2d`).
    Table,
    /// JSON, for scripts; times in RFC 3339.
    Json,
    /// YAML; times in RFC 3339.
    Yaml,
    /// One JSON object per line (audit export for a SIEM).
    Jsonl,
}

// Variant docs are the help text of each command.
#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, compile and store a service spec (YAML or JSON; `-` for stdin).
    Apply(Apply),
    /// Show services, devices or transactions.
    Get {
        #[command(subcommand)]
        what: Get,
    },
    /// Delete a service.
    Delete {
        #[command(subcommand)]
        what: Delete,
    },
    /// Manage the device inventory.
    Devices {
        #[command(subcommand)]
        action: Devices,
    },
    /// Issue, list and revoke API tokens.
    Tokens {
        #[command(subcommand)]
        action: Tokens,
    },
    /// Role bindings of client-certificate users.
    Users {
        #[command(subcommand)]
        action: Users,
    },
    /// Query the audit log (`-o jsonl` for a SIEM).
    Audit(Audit),
    /// Encrypted device credentials.
    Secrets {
        #[command(subcommand)]
        action: Secrets,
    },
    /// Show who rampartd thinks you are.
    Whoami,
    /// Host agents: list (default), enrollment tokens, revocation.
    Agents {
        #[command(subcommand)]
        action: Option<Agents>,
    },
    /// Undo a committed transaction (refused when later ones changed the
    /// same services).
    Rollback(Rollback),
    /// Compare devices' running configuration with what Rampart put there
    /// (exit code 9 when any device drifted).
    CheckSync(CheckSync),
    /// Resolve drift on a device.
    Sync(Sync),
    /// Print a shell completion script (bash, zsh or fish).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let out = Output::new(cli.output);
    let conn = &cli.connection;
    match cli.command {
        Command::Apply(a) => a.run(conn, &out).await,
        Command::Get { what } => what.run(conn, &out).await,
        Command::Delete { what } => what.run(conn, &out).await,
        Command::Devices { action } => action.run(conn, &out).await,
        Command::Tokens { action } => action.run(conn, &out).await,
        Command::Users { action } => action.run(conn, &out).await,
        Command::Audit(a) => a.run(conn, &out).await,
        Command::Secrets { action } => action.run(conn, &out).await,
        Command::Whoami => cmd::whoami::run(conn, &out).await,
        Command::Agents { action } => Agents::run(action, conn, &out).await,
        Command::Rollback(r) => r.run(conn, &out).await,
        Command::CheckSync(c) => c.run(conn, &out).await,
        Command::Sync(s) => s.run(conn, &out).await,
        Command::Completion { shell } => {
            cmd::completion::run(shell);
            Ok(())
        }
    }
}
