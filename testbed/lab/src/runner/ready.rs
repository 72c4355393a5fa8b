//! Waiting until started processes are ready, and collecting what the
//! simulators report on start-up (addresses, certificates, credentials).

use std::{
    collections::BTreeMap,
    fs,
    time::{Duration, Instant},
};

use super::base::{Env, LabError, Pending, Ready, tail};
use crate::{state::State, sys};

/// Waits for every process of `pending` (removing each once ready); fails
/// on the first that exits or is not ready within `env.ready_timeout`.
pub(super) fn wait_ready(
    pending: &mut Vec<Pending>,
    env: &Env,
    state: &mut State,
    creds: &mut BTreeMap<String, String>,
    extra: &mut BTreeMap<String, String>,
) -> Result<(), LabError> {
    let deadline = Instant::now() + env.ready_timeout;
    while !pending.is_empty() {
        let mut i = 0;
        while i < pending.len() {
            let exited = pending[i].child.try_wait().ok().flatten();
            let p = &pending[i];
            if exited.is_some() || !sys::alive(p.proc.pid, p.proc.started) {
                return Err(LabError::NotReady {
                    node: p.node.clone(),
                    process: p.proc.name.clone(),
                    reason: match exited {
                        Some(status) => format!("it exited ({status})"),
                        None => "it is gone".to_owned(),
                    },
                    log: p.proc.log.display().to_string(),
                    tail: tail(&p.proc.log, 30),
                });
            }
            let done = match &p.ready {
                Ready::Tcp(addrs) => addrs.iter().all(|a| sys::tcp_open(&p.ns, *a)),
                Ready::Http { addr, path } => {
                    sys::http_get(&p.ns, *addr, path, Duration::from_millis(500))
                        .is_some_and(|(code, _)| code == 200)
                }
                Ready::Controller { addr, files } => {
                    files.iter().all(|f| f.is_file()) && sys::tcp_open(&p.ns, *addr)
                }
                Ready::SimLines { asa, cred_var } => {
                    let text = fs::read_to_string(&p.proc.log).unwrap_or_default();
                    let lines = sim_lines(&text);
                    let complete = lines.contains_key("LISTENING")
                        && (!*asa || lines.contains_key("CREDENTIALS"));
                    if complete {
                        let info = &mut state.nodes.entry(p.node.clone()).or_default().info;
                        for (k, v) in &lines {
                            // The password is in lab.env, not in status output.
                            let v = if k == "CREDENTIALS" {
                                v.split(' ').next().unwrap_or_default().to_owned()
                            } else {
                                v.clone()
                            };
                            info.insert(k.to_lowercase(), v);
                        }
                        if *asa {
                            let parts: Vec<&str> = lines["CREDENTIALS"].split(' ').collect();
                            if let [user, pass, enable] = parts[..] {
                                // rampartd's ASA driver reads user:password:enable.
                                creds.insert(cred_var.clone(), format!("{user}:{pass}:{enable}"));
                            }
                        }
                        if let Some(cert) = lines.get("CERT") {
                            extra.insert(cred_var.replace("_PASSWORD", "_CA_CERT"), cert.clone());
                        }
                    }
                    complete
                }
            };
            if done {
                tracing::info!(node = %p.node, process = %p.proc.name, pid = p.proc.pid, "ready");
                pending.remove(i);
            } else {
                i += 1;
            }
        }
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let p = &pending[0];
            return Err(LabError::NotReady {
                node: p.node.clone(),
                process: p.proc.name.clone(),
                reason: format!("not ready after {:?}", env.ready_timeout),
                log: p.proc.log.display().to_string(),
                tail: tail(&p.proc.log, 30),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The start-up lines of a simulator (`LISTENING a:p`, `CERT f`, ...).
fn sim_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            matches!(k, "LISTENING" | "CERT" | "ADMIN" | "CREDENTIALS")
                .then(|| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}
