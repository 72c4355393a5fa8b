//! rampartd: the Rampart controller daemon.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use rampart_controller::{
    config::{Config, LogFormat, Overrides},
    daemon::{self, Listeners},
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
    match run(&config) {
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
