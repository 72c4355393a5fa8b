//! `rampart-agent`: the host firewall and L4 load-balancer agent.
//!
//! ```text
//! rampart-agent run --policy FILE     enforce a YAML/JSON policy (firewall
//!                                     and virtual services), hot-reloaded
//! rampart-agent detach [--interface]  remove enforcement (all interfaces by default)
//! rampart-agent status                print what is pinned and enforced (JSON)
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use rampart_agent::{
    attach::XdpModePref, config::Config, daemon, fw::loader, fw::maps::FwMaps, pins::PinLayout,
};

#[derive(Parser)]
#[command(
    name = "rampart-agent",
    version,
    about = "Rampart host firewall agent (XDP/TC eBPF)"
)]
struct Cli {
    /// Agent configuration (TOML).
    #[arg(long, global = true, env = "RAMPART_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Enter this network namespace (`ip netns` name or a path) before
    /// anything else; for interfaces of containers and for tests.
    #[arg(long, global = true)]
    netns: Option<String>,
    /// bpffs directory for pins (overrides the config).
    #[arg(long, global = true)]
    pin_root: Option<PathBuf>,
    /// Accept a bpffs private to this mount namespace (as under `ip netns
    /// exec`), whose pins vanish when the agent exits: enforcement then
    /// ends with the process. Use `--netns` instead where possible.
    #[arg(long, global = true)]
    allow_private_bpffs: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enforce a policy file (standalone mode), reloading it on change, or
    /// the policy rampartd pushes (managed mode: `--controller`).
    Run {
        /// `HostPolicy` as YAML or JSON (standalone mode).
        #[arg(
            long,
            required_unless_present = "controller",
            conflicts_with = "controller"
        )]
        policy: Option<PathBuf>,
        /// Managed mode.
        #[command(flatten)]
        managed: rampart_agent::managed::ManagedArgs,
        /// Prometheus listen address (overrides the config).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// XDP mode (overrides the config).
        #[arg(long, value_enum)]
        xdp_mode: Option<XdpModePref>,
        /// Conntrack entries per interface (overrides the config).
        #[arg(long)]
        conntrack_max: Option<u32>,
    },
    /// Remove enforcement: unpin links, programs and maps.
    Detach {
        /// Only these interfaces (default: all).
        #[arg(long)]
        interface: Vec<String>,
    },
    /// Show pinned interfaces with their generation and verdict counters.
    Status,
    /// Validate a policy file without touching the dataplane.
    Check {
        /// `HostPolicy` as YAML or JSON.
        #[arg(long)]
        policy: PathBuf,
    },
}

fn enter_netns(ns: &str) -> anyhow::Result<()> {
    let path = if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        Path::new("/run/netns").join(ns)
    };
    let f = std::fs::File::open(&path).with_context(|| format!("open netns {}", path.display()))?;
    // SAFETY: setns on a valid fd; called before any thread exists.
    #[allow(unsafe_code, reason = "setns(2) before the runtime starts")]
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "status and check print their result")]
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Namespaces are per thread: enter before the runtime spawns any.
    if let Some(ns) = &cli.netns {
        enter_netns(ns)?;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    rampart_agent::pins::allow_private_bpffs(cli.allow_private_bpffs);
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(p) = cli.pin_root {
        cfg.pin_root = p;
    }
    let layout = PinLayout {
        root: cfg.pin_root.clone(),
    };
    match cli.cmd {
        Cmd::Run {
            policy,
            managed,
            metrics_listen,
            xdp_mode,
            conntrack_max,
        } => {
            if let Some(a) = metrics_listen {
                cfg.metrics_listen = a;
            }
            if let Some(m) = xdp_mode {
                cfg.xdp_mode = m;
            }
            if let Some(c) = conntrack_max {
                cfg.conntrack_max = c;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?;
            rt.block_on(async move {
                let shutdown = async {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("SIGTERM handler");
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                };
                match (managed.config(), policy) {
                    (Some(m), _) => {
                        rampart_agent::managed::enforcer_dataplane::run_daemon(cfg, m, shutdown)
                            .await
                    }
                    (None, Some(policy)) => Ok(daemon::run(cfg, policy, shutdown).await?),
                    (None, None) => Err(anyhow::anyhow!("give --policy FILE or --controller URL")),
                }
            })?;
        }
        Cmd::Detach { interface } => {
            // Load balancers hooked in on their own (no firewall on the
            // interface) are pinned beside the firewall's root.
            let lb_root = rampart_agent::lb::runtime::lb_root(&layout.root);
            let lb_ifaces: Vec<String> = std::fs::read_dir(&lb_root)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| interface.is_empty() || interface.contains(n))
                        .collect()
                })
                .unwrap_or_default();
            for i in &lb_ifaces {
                rampart_agent::lb::maps::detach_pinned(&lb_root.join(i))?;
            }
            if interface.is_empty() {
                let _ = std::fs::remove_dir(&lb_root);
            }
            let done = if interface.is_empty() {
                let mut all = loader::detach_all(&layout)?;
                all.extend(lb_ifaces);
                all.sort();
                all.dedup();
                all
            } else {
                for i in &interface {
                    loader::detach(&layout, i)?;
                }
                interface
            };
            println!("{}", serde_json::json!({ "detached": done }));
        }
        Cmd::Status => {
            let mut out = Vec::new();
            for i in layout.interfaces() {
                let dir = layout.dir(&i);
                let entry = match FwMaps::from_pins(&dir) {
                    Ok(m) => {
                        let reasons: serde_json::Map<String, serde_json::Value> = m
                            .reason_totals()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|(_, _, t)| t.packets > 0)
                            .map(|(d, r, t)| {
                                (
                                    format!(
                                        "{}/{}",
                                        if d == 0 { "ingress" } else { "egress" },
                                        rampart_agent::fw::enforcer::reason_name(r)
                                    ),
                                    serde_json::json!(t.packets),
                                )
                            })
                            .collect();
                        serde_json::json!({
                            "interface": i,
                            "generation": m.generation().ok(),
                            "xdp_link": dir.join("link_xdp").exists(),
                            "tc_link": dir.join("link_tc").exists(),
                            "conntrack_entries": m.ct_entries().ok(),
                            "packets": reasons,
                        })
                    }
                    Err(e) => serde_json::json!({ "interface": i, "error": e.to_string() }),
                };
                out.push(entry);
            }
            // Load balancers: their own entry, or a key of the firewall's.
            for (iface, dir, chained) in rampart_agent::lb::runtime::pinned_balancers(&layout) {
                let lb = match rampart_agent::lb::runtime::pinned_vips(&dir) {
                    Ok(v) => serde_json::json!({
                        "hook": if chained { "after-firewall" } else { "xdp" },
                        "xdp_link": dir.join("link_xdp").exists(),
                        "vips": v
                            .iter()
                            .map(|(a, p, proto)| format!("{}/{}", std::net::SocketAddr::new(*a, *p), if *proto == 6 { "tcp" } else { "udp" }))
                            .collect::<Vec<_>>(),
                    }),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                };
                match out.iter_mut().find(|e| e["interface"] == iface.as_str()) {
                    Some(e) => e["load_balancer"] = lb,
                    None => {
                        out.push(serde_json::json!({ "interface": iface, "load_balancer": lb }));
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Check { policy } => {
            let p = rampart_agent::fw::policy::load_file(&policy)?;
            let c = rampart_agent::fw::policy::compile(&p, &|n| {
                rampart_agent::attach::ifindex(n).is_some()
            })?;
            let defaults = rampart_agent::lb::maps::LbOptions::default();
            let lb = rampart_agent::lb::policy::plan(
                &p.virtual_services,
                &|n| rampart_agent::attach::ifindex(n).is_some(),
                defaults.max_vips,
                defaults.max_table_size,
            )?;
            let n: usize = c
                .interfaces
                .iter()
                .map(|i| i.ingress.rules.len() + i.egress.rules.len())
                .sum();
            println!(
                "{}",
                serde_json::json!({
                    "ok": true,
                    "interfaces": c.interfaces.len(),
                    "rules": n,
                    "virtual_services": lb.values().map(Vec::len).sum::<usize>(),
                })
            );
        }
    }
    Ok(())
}
