//! Fleet-scale load generator: N simulated agents against one rampartd
//! process (real gRPC, TLS and mutual TLS, one connection per agent, one
//! enrollment and one certificate per agent), heartbeats every second,
//! policy pushes acknowledged at once. Reports push→ack latency (as the
//! controller measures it, and apply→push as an operator sees it),
//! whether heartbeat processing keeps up, and rampartd's CPU and RSS.
//!
//! `cargo run --release -p rampart-fleet-bench -- \
//!    --rampartd target/release/rampartd --agents 1000,2000,5000`
//! Results: `docs/bench-fleet.md`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its result table")]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "statistics over small counts"
)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use rampart_proto::v1::{
    self as pb, agent_enrollment_client::AgentEnrollmentClient,
    agent_service_client::AgentServiceClient, fleet_manager_client::FleetManagerClient,
    service_manager_client::ServiceManagerClient,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

#[derive(Parser)]
struct Args {
    /// rampartd binary (build it with --release).
    #[arg(long, default_value = "target/release/rampartd")]
    rampartd: PathBuf,
    /// Fleet sizes to try, in order.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000")]
    agents: Vec<usize>,
    /// Seconds of steady state measured (heartbeats, CPU).
    #[arg(long, default_value_t = 20)]
    steady_s: u64,
    /// Policy changes pushed during the run.
    #[arg(long, default_value_t = 5)]
    pushes: u32,
}

struct Rampartd {
    child: Child,
    api: String,
    agents: String,
    metrics: String,
    data: PathBuf,
}

impl Drop for Rampartd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_rampartd(bin: &Path, dir: &Path) -> anyhow::Result<Rampartd> {
    let data = dir.join("data");
    let (api, metrics) = (free_port()?, free_port()?);
    let cfg = format!(
        r#"[api]
listen = "127.0.0.1:{api}"
[metrics]
enabled = false
[store]
data_dir = "{data}"
[log]
level = "warn"
[limits]
requests_per_second = 1000000.0
burst = 1000000
max_concurrent_requests = 100000
[agents]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:{metrics}"
refresh_ms = 500
stale_after_s = 5
"#,
        data = data.display()
    );
    let cfg_path = dir.join("rampartd.toml");
    std::fs::write(&cfg_path, cfg)?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let addr_file = data.join("agents.addr");
    for _ in 0..600 {
        if let Ok(a) = std::fs::read_to_string(&addr_file)
            && data.join("admin.token").exists()
        {
            return Ok(Rampartd {
                child,
                api: format!("https://127.0.0.1:{api}"),
                agents: format!("https://{}", a.trim()),
                metrics: format!("127.0.0.1:{metrics}"),
                data,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("rampartd did not come up")
}

/// utime+stime in clock ticks and RSS in kB of `pid`.
fn proc_usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

async fn tls_channel(url: &str, ca: &str, id: Option<Identity>) -> anyhow::Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(id) = id {
        tls = tls.identity(id);
    }
    Ok(Channel::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await?)
}

fn authed<T>(token: &str, m: T) -> Request<T> {
    let mut r = Request::new(m);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn service_doc(port: u32) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: bench, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinationPorts: [{port}]}}
    - {{sequence: 20, action: permit, protocol: udp, destinationPorts: [53]}}
  targets:
    hosts:
      - selector: {{role: bench}}
"
    )
}

/// Receive time of each version, per agent.
type Seen = Arc<Mutex<Vec<(u64, Instant)>>>;

async fn run_agent(
    url: String,
    ca: Arc<String>,
    id: Identity,
    seen: Seen,
    heartbeats: Arc<AtomicU64>,
    connecting: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let ch = tls_channel(&url, &ca, Some(id)).await?;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello::default())),
    })
    .await?;
    let mut inbound = AgentServiceClient::new(ch)
        .session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    drop(connecting);
    // Spread heartbeats over the second.
    let offset = Duration::from_millis(u64::from(rand_ms()));
    let mut hb =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, Duration::from_secs(1));
    let mut seq = 0;
    loop {
        tokio::select! {
            m = inbound.message() => {
                let Some(m) = m? else { return Ok(()) };
                // A plain push is enforced at once; a transaction's push is
                // staged (acked as such) and enforced on its Activate.
                let (version, staged) = match m.msg {
                    Some(pb::controller_message::Msg::Push(p)) => (p.version, p.stage),
                    Some(pb::controller_message::Msg::Activate(a)) => (a.version, false),
                    _ => continue,
                };
                if !staged {
                    seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((version, Instant::now()));
                }
                tx.send(pb::AgentMessage {
                    msg: Some(pb::agent_message::Msg::Ack(pb::Ack { version, ok: true, staged, ..Default::default() })),
                }).await?;
            }
            _ = hb.tick() => {
                seq += 1;
                heartbeats.fetch_add(1, Ordering::Relaxed);
                tx.send(pb::AgentMessage {
                    msg: Some(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
                        seq,
                        health: Some(pb::Health { conntrack_max: 65_536, ..Default::default() }),
                        applied_version: 0,
                    })),
                }).await?;
            }
        }
    }
}

fn rand_ms() -> u32 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (n / 7) % 1000
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn histogram_quantile(text: &str, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map_or(f64::NAN, |b| b.0)
}

async fn scrape(addr: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i]
}

async fn one_size(args: &Args, n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = start_rampartd(&args.rampartd, dir.path())?;
    let pid = d.child.id();
    let ca = Arc::new(std::fs::read_to_string(d.data.join("tls/ca.crt"))?);
    let admin = std::fs::read_to_string(d.data.join("admin.token"))?
        .trim()
        .to_owned();
    let api = tls_channel(&d.api, &ca, None).await?;
    ServiceManagerClient::new(api.clone())
        .apply_service(authed(
            &admin,
            pb::ApplyServiceRequest {
                document: service_doc(1000),
                format: 0,
                source_name: "bench.yaml".into(),
                dry_run: false,
            },
        ))
        .await?;

    // Enroll every agent (one token, key, CSR and certificate each).
    let t_enroll = Instant::now();
    let enroll_ch = tls_channel(&d.agents, &ca, None).await?;
    let sem = Arc::new(Semaphore::new(32));
    let mut joins = Vec::with_capacity(n);
    for i in 0..n {
        let (api, ch, admin, sem) = (api.clone(), enroll_ch.clone(), admin.clone(), sem.clone());
        joins.push(tokio::spawn(async move {
            let _p = sem.acquire().await?;
            let token = FleetManagerClient::new(api)
                .create_enroll_token(authed(
                    &admin,
                    pb::CreateEnrollTokenRequest {
                        ttl_secs: 3600,
                        labels: [("role".to_owned(), "bench".to_owned())].into(),
                    },
                ))
                .await?
                .into_inner()
                .token;
            let key = rcgen::KeyPair::generate()?;
            let params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            let csr = params.serialize_request(&key)?.pem()?;
            let r = AgentEnrollmentClient::new(ch)
                .enroll(pb::EnrollRequest {
                    token,
                    hostname: format!("sim-{i}"),
                    labels: Default::default(),
                    csr_pem: csr,
                })
                .await?
                .into_inner();
            anyhow::Ok(Identity::from_pem(r.cert_pem, key.serialize_pem()))
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for j in joins {
        ids.push(j.await??);
    }
    let enroll_s = t_enroll.elapsed().as_secs_f64();

    // Connect everyone.
    let heartbeats = Arc::new(AtomicU64::new(0));
    let seen: Vec<Seen> = (0..n).map(|_| Seen::default()).collect();
    let t_connect = Instant::now();
    let connect_sem = Arc::new(Semaphore::new(64));
    let errors = Arc::new(AtomicU64::new(0));
    for (id, s) in ids.into_iter().zip(&seen) {
        let (url, ca, s, hb, sem, errors) = (
            d.agents.clone(),
            ca.clone(),
            s.clone(),
            heartbeats.clone(),
            connect_sem.clone(),
            errors.clone(),
        );
        let permit = sem.acquire_owned().await?;
        tokio::spawn(async move {
            if let Err(e) = run_agent(url, ca, id, s, hb, permit).await
                && errors.fetch_add(1, Ordering::Relaxed) < 3
            {
                eprintln!("agent session ended: {e:#}");
            }
        });
    }
    // Wait until every agent received version 1.
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen
        .iter()
        .filter(|s| s.lock().map(|v| !v.is_empty()).unwrap_or(false))
        .count()
        < n
    {
        if Instant::now() > deadline {
            bail!("not every agent got its first policy within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_s = t_connect.elapsed().as_secs_f64();

    // Steady state: heartbeats + policy pushes.
    let m0 = scrape(&d.metrics).await;
    let hb0 = metric(&m0, "rampart_fleet_heartbeats_total");
    let (cpu0, _) = proc_usage(pid);
    let t0 = Instant::now();
    let mut apply_to_push = Vec::new();
    let every = Duration::from_secs(args.steady_s) / (args.pushes + 1);
    for k in 0..args.pushes {
        tokio::time::sleep(every).await;
        let version = u64::from(k) + 2;
        let t_apply = Instant::now();
        ServiceManagerClient::new(api.clone())
            .apply_service(authed(
                &admin,
                pb::ApplyServiceRequest {
                    document: service_doc(2000 + k),
                    format: 0,
                    source_name: "bench.yaml".into(),
                    dry_run: false,
                },
            ))
            .await?;
        let wait_until = Instant::now() + Duration::from_secs(30);
        loop {
            let got = seen
                .iter()
                .filter(|s| {
                    s.lock()
                        .map(|v| v.iter().any(|(ver, _)| *ver == version))
                        .unwrap_or(false)
                })
                .count();
            if got == n || Instant::now() > wait_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for s in &seen {
            if let Ok(v) = s.lock()
                && let Some((_, at)) = v.iter().find(|(ver, _)| *ver == version)
            {
                apply_to_push.push(at.duration_since(t_apply).as_secs_f64());
            }
        }
    }
    let rest = Duration::from_secs(args.steady_s).saturating_sub(t0.elapsed());
    tokio::time::sleep(rest).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, rss_kb) = proc_usage(pid);
    let m1 = scrape(&d.metrics).await;
    let hb1 = metric(&m1, "rampart_fleet_heartbeats_total");
    let sent = heartbeats.load(Ordering::Relaxed);
    let online = metric(&m1, "rampart_fleet_agents{state=\"online\"}");
    let stale = metric(&m1, "rampart_fleet_agents{state=\"stale\"}");
    let p99_ack = histogram_quantile(&m1, "rampart_fleet_push_ack_seconds", 0.99);
    let p50_ack = histogram_quantile(&m1, "rampart_fleet_push_ack_seconds", 0.50);
    let ticks = 100.0; // CLK_TCK on Linux.
    let cpu_pct = (cpu1 - cpu0) as f64 / ticks / elapsed * 100.0;
    let hb_rate = (hb1 - hb0) / elapsed;
    let expected = n as f64;
    let pushes_expected = n * args.pushes as usize;
    println!(
        "| {n} | {enroll_s:.1} | {connect_s:.1} | {p50_ack:.3} | {p99_ack:.3} | {:.3} | {:.3} | {}/{} | {hb_rate:.0}/{expected:.0} | {online:.0}/{stale:.0} | {cpu_pct:.0}% | {} | {} |",
        percentile(&mut apply_to_push.clone(), 0.5),
        percentile(&mut apply_to_push, 0.99),
        apply_to_push.len(),
        pushes_expected,
        rss_kb / 1024,
        errors.load(Ordering::Relaxed),
    );
    let _ = sent;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "| agents | enroll s | connect+first push s | push→ack p50 s (controller) | push→ack p99 s (controller) | apply→push p50 s | apply→push p99 s | pushes received | heartbeats/s processed/expected | online/stale | rampartd CPU (of 1 core) | rampartd RSS MB | session errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.agents {
        if let Err(e) = one_size(&args, n).await {
            println!("| {n} | failed: {e:#} |");
        }
    }
    Ok(())
}
