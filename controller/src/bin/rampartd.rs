//! rampartd: the Rampart controller daemon.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rampart_controller::{
    config::{Config, LogFormat, Overrides},
    daemon::{self, Listeners},
    store::{
        Store,
        backup::Snapshot,
        secrets::{KEY_ENV, Keyring},
    },
    telemetry,
};

/// Compiles declarative network-service specs into device configuration.
#[derive(Debug, Parser)]
#[command(name = "rampartd", version, about)]
struct Args {
    /// TOML configuration file (all settings have defaults).
    #[arg(short, long, env = "RAMPARTD_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (overrides [api] listen).
    #[arg(long, env = "RAMPARTD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Prometheus listen address (overrides [metrics] listen).
    #[arg(long, env = "RAMPARTD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Data directory of the embedded store (overrides [store] data_dir).
    #[arg(long, env = "RAMPARTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "RAMPARTD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter (`info`, `rampart_controller=debug`).
    #[arg(long, env = "RAMPARTD_LOG")]
    log_level: Option<String>,
    /// Serve the API without TLS (labs only; logged loudly). Same as
    /// `[tls] enabled = false`.
    #[arg(long, env = "RAMPARTD_INSECURE")]
    insecure: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Offline store maintenance instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Store maintenance; the store is the one the configuration selects (sled
/// needs the daemon stopped: it holds the database lock).
#[derive(Debug, Subcommand)]
enum Command {
    /// Write a consistent snapshot of the whole store (credentials stay
    /// encrypted; keep the secret key with it).
    Backup {
        /// Output file (written 0600, replaced atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Load a snapshot into an empty store (also: migrate sled → etcd by
    /// restoring a sled backup with `[store] backend = "etcd"`).
    Restore {
        /// A file written by `rampartd backup` or `rampartctl backup`.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        data_dir: args.data_dir.clone(),
        log_format: args.log_format,
        log_level: args.log_level.clone(),
        insecure: args.insecure,
    };
    let config = match Config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rampartd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        eprintln!("rampartd: configuration OK");
        return ExitCode::SUCCESS;
    }
    let outcome = match &args.command {
        None => run(&config),
        Some(Command::Backup { output }) => backup(&config, output),
        Some(Command::Restore { file }) => restore(&config, file),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampartd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config) -> anyhow::Result<()> {
    telemetry::init_logging(config.log.format, &config.log.level)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(async {
        let api = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("cannot listen on {} (api.listen)", config.api.listen))?;
        let metrics = if config.metrics.enabled {
            Some(
                tokio::net::TcpListener::bind(config.metrics.listen)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot listen on {} (metrics.listen)",
                            config.metrics.listen
                        )
                    })?,
            )
        } else {
            None
        };
        daemon::run(config, Listeners { api, metrics }, daemon::signals()).await?;
        Ok(())
    })
}

/// The store and, when one exists, the secret key the daemon would use
/// (never generated here: a new key would not open the stored records).
fn open_store(config: &Config) -> anyhow::Result<Store> {
    let data_dir = config.store.resolved_data_dir();
    let store = Store::open_configured(&config.store, &data_dir)?;
    let env_key = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty());
    if config.secrets.key_file.is_some()
        || env_key.is_some()
        || data_dir.join("secret.key").exists()
    {
        let (keyring, _) = Keyring::load(
            config.secrets.key_file.as_deref(),
            env_key.as_deref(),
            &config.secrets.previous_key_files,
            &data_dir,
        )?;
        store.install_keyring(keyring);
    }
    Ok(store)
}

fn backup(config: &Config, output: &std::path::Path) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let snap = store.backup()?;
    rampart_controller::tls::write_private(output, &snap.to_bytes()?)?;
    eprintln!(
        "rampartd: backup of the {} store written to {}: {}",
        snap.backend,
        output.display(),
        summary(&snap)
    );
    Ok(())
}

fn restore(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(file).with_context(|| format!("cannot read backup {}", file.display()))?;
    let snap = Snapshot::from_bytes(&bytes).with_context(|| file.display().to_string())?;
    let store = open_store(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(store.restore(&snap))?;
    eprintln!(
        "rampartd: restored {} into the {} store: {}",
        file.display(),
        store.backend(),
        summary(&snap)
    );
    let check = store.check_secrets()?;
    if check.unreadable.is_empty() {
        return Ok(());
    }
    for (device, why) in &check.unreadable {
        eprintln!("rampartd: {device}: {why}");
    }
    anyhow::bail!(
        "{} device credentials do not decrypt with the configured key (the backup was sealed \
         under key {}): configure that key ([secrets] key_file or {KEY_ENV}) before starting",
        check.unreadable.len(),
        snap.secret_key_id.as_deref().unwrap_or("unknown")
    )
}

fn summary(snap: &Snapshot) -> String {
    snap.counts()
        .iter()
        .map(|(tree, n)| format!("{tree} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
