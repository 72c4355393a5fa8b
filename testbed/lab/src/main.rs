//! `rampart-lab`: brings the Rampart lab up in Linux network namespaces.
//!
//! ```text
//! rampart-lab [--topology FILE] [--state-dir DIR] up|status|down|exec|check
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use rampart_lab::{
    http, inventory,
    runner::{self, Env, UpOutcome},
    state::State,
    sys, topology,
};

/// Brings the Rampart lab (a containerlab topology) up in network namespaces.
#[derive(Parser)]
#[command(name = "rampart-lab", version, about)]
struct Cli {
    /// Topology file (containerlab format)
    /// [default: <root>/testbed/clab/rampart.clab.yml].
    #[arg(long, short = 't', global = true, env = "RAMPART_LAB_TOPOLOGY")]
    topology: Option<PathBuf>,
    /// State directory [default: <root>/.lab/<lab name>].
    #[arg(long, global = true, env = "RAMPART_LAB_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Project checkout (for testbed/sims) [default: where this binary was built from].
    #[arg(long, global = true, env = "RAMPART_ROOT")]
    root: Option<PathBuf>,
    /// Directory of rampartd, rampartctl and rampart-agent [default: this binary's directory].
    #[arg(long, global = true, env = "RAMPART_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Cisco IOS-XE 16.9.3 YANG models for netconfd
    /// [default: <root>/../shared/yang/cisco-xe-16.9.3].
    #[arg(long, global = true, env = "RAMPART_VENDOR_YANG")]
    vendor_yang: Option<PathBuf>,
    /// Seconds each process gets to become ready.
    #[arg(long, global = true, default_value_t = 30)]
    ready_timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab (idempotent; a failed up leaves nothing behind).
    Up,
    /// Show nodes, addresses and processes; exit 1 when something is down.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Lab name (default: the topology's).
        #[arg(long)]
        lab: Option<String>,
    },
    /// Remove everything of the lab (also after a crash); exit 0 when
    /// nothing is there.
    Down {
        /// Lab name (default: the topology's; the file need not be valid).
        #[arg(long)]
        lab: Option<String>,
    },
    /// Run a command in a node's network namespace.
    Exec {
        /// Node name.
        node: String,
        /// Lab name (default: the topology's).
        #[arg(long)]
        lab: Option<String>,
        /// Command and arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Validate topology files (and an inventory against each) without root.
    Check {
        /// Topology files (default: --topology).
        files: Vec<PathBuf>,
        /// Inventory the topologies must agree with.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
    /// Print the inventory a topology implies.
    Inventory,
    /// (internal) The web backend of `server` nodes.
    #[command(hide = true)]
    HttpServe {
        /// Node name to answer with.
        #[arg(long)]
        name: String,
        /// Listen addresses.
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
}

fn default_root() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    built.canonicalize().unwrap_or(built)
}

/// The `name:` of a topology file, even when the rest is invalid (so
/// `down` works on a file that no longer validates).
fn lab_name(path: &Path) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct NameOnly {
        name: String,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let n: NameOnly = serde_norway::from_str(&text)
        .with_context(|| format!("{}: no lab name", path.display()))?;
    topology::check_lab_name(&n.name).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(n.name)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

#[allow(clippy::print_stdout, reason = "a CLI prints its results")]
fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAMPART_LAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "a CLI prints its results")]
#[allow(clippy::too_many_lines, reason = "one match arm per subcommand")]
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = cli.root.clone().unwrap_or_else(default_root);
    let topology = cli
        .topology
        .clone()
        .unwrap_or_else(|| root.join("testbed/clab/rampart.clab.yml"));
    let bin_dir = cli.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| root.join("target/debug"))
    });
    let env_for = |lab: &str| -> anyhow::Result<Env> {
        topology::check_lab_name(lab).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Env {
            root: root.clone(),
            bin_dir: bin_dir.clone(),
            cisco_yang: cli
                .vendor_yang
                .clone()
                .unwrap_or_else(|| root.join("../shared/yang/cisco-xe-16.9.3")),
            state_dir: cli
                .state_dir
                .clone()
                .unwrap_or_else(|| root.join(".lab").join(lab)),
            ready_timeout: Duration::from_secs(cli.ready_timeout),
        })
    };
    let need_root = |what: &str| -> anyhow::Result<()> {
        if !is_root() {
            bail!("{what} needs root (network namespaces, veth links, bpffs)");
        }
        Ok(())
    };
    match cli.cmd {
        Cmd::Up => {
            need_root("up")?;
            let name = lab_name(&topology)?;
            let env = env_for(&name)?;
            let _lock = sys::lock(&env.state_dir.join(".lock"))?;
            let (state, outcome) = runner::up(&topology, &env)?;
            let st = runner::status(&state);
            print!("{}", st.render());
            if outcome == UpOutcome::AlreadyUp {
                println!("lab {} was already up: nothing changed", state.lab);
            }
            if let Some(f) = &state.env_file {
                println!("environment: source {}", f.display());
            }
            if let Some(f) = &state.inventory {
                println!("inventory:   {}", f.display());
            }
            println!(
                "take it down: {} down --topology {}",
                std::env::args()
                    .next()
                    .unwrap_or_else(|| "rampart-lab".into()),
                topology.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json, lab } => {
            let name = match lab {
                Some(l) => l,
                None => lab_name(&topology)?,
            };
            let env = env_for(&name)?;
            let Some(state) = State::load(&env.state_dir.join("state.json"))? else {
                let left = runner::leftovers(&name);
                if left.is_empty() {
                    println!("lab {name}: down (nothing running)");
                } else {
                    println!(
                        "lab {name}: no state file, but leftovers: {}",
                        left.join(", ")
                    );
                }
                return Ok(ExitCode::from(1));
            };
            let mut st = runner::status(&state);
            runner::observe(&mut st, &state, &env);
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", st.render());
            }
            Ok(if st.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Down { lab } => {
            need_root("down")?;
            let name = match lab {
                Some(l) => l,
                None => lab_name(&topology)?,
            };
            let env = env_for(&name)?;
            let _lock = sys::lock(&env.state_dir.join(".lock"))?;
            let r = runner::down(&name, &env)?;
            if r.nothing() {
                println!("lab {name}: nothing to remove");
            } else {
                println!(
                    "lab {name}: removed {} process(es), {} namespace(s), {} host link(s), {} bpffs dir(s)",
                    r.processes, r.namespaces, r.links, r.bpf_dirs
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { node, lab, command } => {
            let name = match lab {
                Some(l) => l,
                None => lab_name(&topology)?,
            };
            let ns = runner::ns_name(&name, &node);
            if !sys::netns_exists(&ns) {
                bail!("node {node} of lab {name}: namespace {ns} does not exist (is the lab up?)");
            }
            let status = std::process::Command::new("nsenter")
                .arg(format!("--net={}/{ns}", sys::NETNS_DIR))
                .arg("--")
                .args(&command)
                .status()
                .context("cannot run nsenter")?;
            Ok(ExitCode::from(
                u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
            ))
        }
        Cmd::Check {
            files,
            inventory: inv,
        } => {
            let files = if files.is_empty() {
                vec![topology]
            } else {
                files
            };
            let inv = inv.map(|p| inventory::load(&p)).transpose()?;
            let mut failed = false;
            for f in &files {
                match topology::load(f) {
                    Ok(lab) => {
                        let problems = inv
                            .as_ref()
                            .map(|i| inventory::check(&lab, i))
                            .unwrap_or_default();
                        if problems.is_empty() {
                            println!(
                                "{}: ok ({} nodes, {} links)",
                                f.display(),
                                lab.nodes.len(),
                                lab.links.len()
                            );
                        } else {
                            failed = true;
                            println!(
                                "{}: inventory disagrees:\n  {}",
                                f.display(),
                                problems.join("\n  ")
                            );
                        }
                    }
                    Err(e) => {
                        failed = true;
                        println!("{e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Inventory => {
            let lab = topology::load(&topology)?;
            print!("{}", serde_norway::to_string(&inventory::from_lab(&lab))?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::HttpServe { name, listen } => {
            http::serve(&name, &listen)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
