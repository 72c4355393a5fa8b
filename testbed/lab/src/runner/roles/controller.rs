//! `controller`: rampartd, configured for the lab (API, metrics, the agent
//! port and the fleet metrics), trusting exactly the lab devices' SSH host
//! keys and the simulators' CAs; and [`ctl`], rampartctl against it.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use crate::{
    runner::base::{
        Env, LabError, Launch, Pending, Ready, io, lab_env, launch, ns_name, primary, run_dir, step,
    },
    state::State,
    sys::{self, SysError},
    topology::{Lab, Node, Role},
};

/// The OpenSSH `known_hosts` lines of the lab's SSH devices: the key
/// `up` generated for each NETCONF device, and each ASA simulator's key read
/// with `ssh-keyscan` from inside the lab. rampartd checks host keys
/// strictly against it (no trust on first use).
fn known_hosts(lab: &Lab) -> Result<String, LabError> {
    let mut out = String::new();
    for n in &lab.nodes {
        if n.has(Role::NetconfDevice) {
            let f = run_dir(&lab.name).join(&n.name).join("known_hosts");
            out.push_str(&fs::read_to_string(&f).map_err(io(&f))?);
        }
        if n.has(Role::SimAsa) {
            let (_, _, port) = n.device().unwrap_or((Role::SimAsa, "asa", 22));
            let ns = ns_name(&lab.name, &n.name);
            let scan = sys::run(
                "nsenter",
                &[
                    &format!("--net={}/{ns}", sys::NETNS_DIR),
                    "ssh-keyscan",
                    "-T",
                    "5",
                    "-p",
                    &port.to_string(),
                    &primary(n).to_string(),
                ],
            )
            .map_err(step(&n.name, "read the SSH host key (ssh-keyscan)"))?;
            if !scan
                .lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                return Err(LabError::Step {
                    node: n.name.clone(),
                    step: "read the SSH host key".to_owned(),
                    source: SysError::Failed {
                        command: "ssh-keyscan".to_owned(),
                        stderr: "no key returned".to_owned(),
                    },
                });
            }
            out.push_str(&scan);
        }
    }
    Ok(out)
}

/// rampartd's API port in the lab.
pub const API_PORT: u16 = 50051;
/// rampartd's metrics port in the lab.
pub const METRICS_PORT: u16 = 9464;
/// rampartd's agent port (mutual TLS) in the lab.
pub const AGENT_PORT: u16 = 7443;
/// rampartd's periodic drift check interval in the lab, seconds.
pub const DRIFT_INTERVAL_S: u64 = 10;
/// rampartd's fleet metrics port (`rampart_fleet_*`) in the lab.
pub const FLEET_METRICS_PORT: u16 = 9465;

/// Starts rampartd on `n` with the devices' credentials in its environment.
pub(crate) fn start(
    lab: &Lab,
    n: &Node,
    env: &Env,
    state: &State,
    creds: &BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    let dir = env.node_dir(&n.name);
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(io(&data))?;
    // `[southbound] known_hosts` defaults to <data_dir>/known_hosts.
    let kh = data.join("known_hosts");
    fs::write(&kh, known_hosts(lab)?).map_err(io(&kh))?;
    let mut sans: Vec<String> = n
        .interfaces
        .iter()
        .flat_map(|i| &i.addresses)
        .map(|a| a.addr().to_string())
        .collect();
    if let Some(m) = &state.mgmt {
        sans.push(m.node_addr.clone());
    }
    sans.push(n.name.clone());
    let quoted: Vec<String> = sans.iter().map(|s| format!("{s:?}")).collect();
    let config = dir.join("rampartd.toml");
    fs::write(
        &config,
        format!(
            "# rampartd in lab {} (written by rampart-lab)\n[api]\nlisten = \"0.0.0.0:{API_PORT}\"\n\n[metrics]\nenabled = true\nlisten = \"0.0.0.0:{METRICS_PORT}\"\n\n[store]\ndata_dir = {:?}\n\n[log]\nformat = \"text\"\nlevel = \"info\"\n\n[tls]\nextra_sans = [{}]\n\n[agents]\n# Managed agents of the lab enroll and stream here (mutual TLS).\nlisten = \"0.0.0.0:{AGENT_PORT}\"\nmetrics_listen = \"0.0.0.0:{FLEET_METRICS_PORT}\"\nrefresh_ms = 200\nstale_after_s = 5\nextra_sans = [{}]\n\n[southbound]\n# Drift checks often enough that the lab's dashboards show drift (and\n# unreachable devices) within seconds.\ndrift_interval_s = {DRIFT_INTERVAL_S}\n# The simulators' throw-away CAs, written once they are up (read at connect).\nca_bundle = {:?}\n",
            lab.name,
            data.display().to_string(),
            quoted.join(", "),
            quoted.join(", "),
            env.state_dir.join("sims-ca.pem").display().to_string()
        ),
    )
    .map_err(io(&config))?;
    // A rampartd built before `[southbound] ca_bundle` existed refuses the
    // key: fall back to a configuration without it (REST devices then need
    // the public roots) rather than failing the whole lab.
    let check = std::process::Command::new(env.bin_dir.join("rampartd"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output();
    if let Ok(out) = check
        && !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("ca_bundle")
    {
        tracing::warn!(node = %n.name, "this rampartd has no [southbound] ca_bundle; the simulators' CA is not trusted");
        let text = fs::read_to_string(&config).map_err(io(&config))?;
        let cut = text.find("\n[southbound]").unwrap_or(text.len());
        fs::write(&config, format!("{}\n", &text[..cut])).map_err(io(&config))?;
    }
    let mut penv = lab_env(lab);
    penv.extend(creds.iter().map(|(k, v)| (k.clone(), v.clone())));
    launch(
        lab,
        n,
        env,
        Launch {
            process: "rampartd",
            log: "rampartd",
            program: &env.bin_dir.join("rampartd"),
            args: &["--config".to_owned(), config.display().to_string()],
            env: &penv,
            ready: Ready::Controller {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), API_PORT),
                files: vec![data.join("admin.token"), data.join("tls/ca.crt")],
            },
        },
    )
}

/// rampartctl against the lab's rampartd, over the management link, as the
/// bootstrap admin; stdout on success.
pub(crate) fn ctl(lab: &Lab, env: &Env, state: &State, args: &[&str]) -> Result<String, SysError> {
    let bin = env.bin_dir.join("rampartctl");
    let (Some(ctl), Some(m)) = (lab.controller(), &state.mgmt) else {
        return Err(SysError::Failed {
            command: "rampartctl".to_owned(),
            stderr: "the lab has no controller".to_owned(),
        });
    };
    let data = env.node_dir(&ctl.name).join("data");
    let out = std::process::Command::new(&bin)
        .args(["-o", "json"])
        .args(args)
        .env(
            "RAMPART_SERVER",
            format!("https://{}:{API_PORT}", m.node_addr),
        )
        .env("RAMPART_CA_CERT", data.join("tls/ca.crt"))
        .env("RAMPART_TOKEN_FILE", data.join("admin.token"))
        .env_remove("RAMPART_TOKEN")
        .env_remove("RAMPART_CTL_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SysError::Spawn {
            command: bin.display().to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SysError::Failed {
            command: format!("rampartctl {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
