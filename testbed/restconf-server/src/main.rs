//! `restconf-server`: runs the test RESTCONF server until interrupted.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::Parser;
use rampart_restconf_server::{ServerConfig, start};

/// Test RESTCONF server validating data against YANG models.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Directory of YANG modules.
    #[arg(long)]
    models: PathBuf,
    /// Module to load (repeatable).
    #[arg(long = "module", required = true)]
    modules: Vec<String>,
    /// Basic-auth user.
    #[arg(long, default_value = "admin")]
    username: String,
    /// Basic-auth password.
    #[arg(long, env = "RESTCONF_PASSWORD")]
    password: String,
    /// Write the self-signed certificate (PEM) here.
    #[arg(long)]
    cert_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let server = start(
        args.listen,
        ServerConfig {
            models: args.models,
            modules: args.modules,
            username: args.username,
            password: args.password,
        },
    )
    .await?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, &server.cert_pem)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(addr = %server.addr, "restconf server listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
