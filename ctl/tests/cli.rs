//! rampartctl against a real rampartd on a free loopback port: every
//! command, every output format, and the documented exit codes. rampartd
//! runs as shipped: TLS on with the CA it generates, and rampartctl uses
//! that CA and the bootstrap admin token from its data directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

struct Daemon {
    child: Child,
    server: String,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rampartd is built by the same `cargo test`/`nextest` run (it is a binary
/// of the workspace); find it next to our own executable's directory.
fn rampartd() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("rampartd");
    assert!(
        bin.exists(),
        "{} missing: build the workspace (cargo build) first",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let child = Command::new(rampartd())
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        server: format!("https://127.0.0.1:{port}"),
        data,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || !d.data.join("admin.token").exists()
        || !d.data.join("tls/ca.crt").exists()
    {
        assert!(Instant::now() < deadline, "rampartd did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    d
}

/// rampartctl pointed at `d` with its CA, and no other configuration
/// (HOME is the daemon's temp dir, so no ~/.config/rampart/ctl.toml).
fn ctl_cmd(d: &Daemon) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rampartctl"));
    c.env_clear()
        .env("HOME", d.data.parent().unwrap())
        .env("RAMPART_SERVER", &d.server)
        .env("RAMPART_CA_CERT", d.data.join("tls/ca.crt"));
    c
}

/// As the bootstrap admin.
fn ctl(d: &Daemon, args: &[&str]) -> Output {
    ctl_cmd(d)
        .env("RAMPART_TOKEN_FILE", d.data.join("admin.token"))
        .args(args)
        .output()
        .unwrap()
}

/// With a given token.
fn ctl_as(d: &Daemon, token: &str, args: &[&str]) -> Output {
    ctl_cmd(d)
        .env("RAMPART_TOKEN", token)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn example(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

const HOST_FIREWALL: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: hosts-fw, tenant: beta}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}
  targets:
    hosts:
      - selector: {role: web}
";

#[test]
fn every_command_against_a_real_rampartd() {
    let d = start();
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("hosts-fw.yaml");
    std::fs::write(&spec, HOST_FIREWALL).unwrap();
    let spec = spec.to_str().unwrap();

    // Inventory from a file, shown as a table and as JSON (redacted).
    let out = ok(&ctl(
        &d,
        &["devices", "add", "-f", &example("inventory.yaml")],
    ));
    assert!(out.contains("csr1") && out.contains("iosxe"), "{out}");
    let json = ok(&ctl(&d, &["-o", "json", "get", "devices"]));
    let devices: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 5, "{json}");
    assert_eq!(devices[0]["credentialsRef"], "env:<redacted>", "{json}");
    assert!(
        !json.contains("CSR1_PASSWORD"),
        "credentials reference leaked: {json}"
    );
    let one = ok(&ctl(&d, &["-o", "yaml", "get", "devices", "mx1"]));
    assert!(one.contains("platform: meraki-mx"), "{one}");
    let sel = ok(&ctl(
        &d,
        &["-o", "json", "get", "devices", "-l", "role=firewall"],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sel)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Dry-run prints the rendering and stores nothing.
    let dry = ok(&ctl(&d, &["apply", "-f", spec, "--dry-run"]));
    assert!(
        dry.contains("--- hosts:role=web (agent, agent-policy)"),
        "{dry}"
    );
    assert!(dry.contains("nothing was stored"), "{dry}");
    let dry_json = ok(&ctl(&d, &["-o", "json", "apply", "-f", spec, "--dry-run"]));
    let v: serde_json::Value = serde_json::from_str(&dry_json).unwrap();
    assert_eq!(v["dryRun"], true);
    assert_eq!(v["summary"]["targets"], 1);
    assert_eq!(
        ok(&ctl(&d, &["-o", "json", "get", "services"])).trim(),
        "[]"
    );

    // Apply from a file and from stdin.
    let applied = ok(&ctl(&d, &["apply", "-f", spec]));
    assert!(
        applied.contains("applied txn-") && applied.contains("generation 1"),
        "{applied}"
    );
    let mut child = ctl_cmd(&d)
        .env("RAMPART_TOKEN_FILE", d.data.join("admin.token"))
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), HOST_FIREWALL.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(ok(&out).contains("generation 2"));

    let table = ok(&ctl(&d, &["get", "services"]));
    assert!(table.contains("hosts-fw") && table.contains("beta") && table.contains("Firewall"));
    let svc = ok(&ctl(&d, &["-o", "json", "get", "service", "hosts-fw"]));
    let v: serde_json::Value = serde_json::from_str(&svc).unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(v["spec"]["spec"]["rules"][0]["sequence"], 10, "{svc}");

    let txns = ok(&ctl(&d, &["-o", "json", "get", "transactions"]));
    let t: serde_json::Value = serde_json::from_str(&txns).unwrap();
    assert_eq!(t.as_array().unwrap().len(), 2);
    let id = t[0]["id"].as_str().unwrap().to_owned();
    let shown = ok(&ctl(&d, &["get", "transaction", &id]));
    assert!(
        shown.contains("committed") && shown.contains("agent-policy"),
        "{shown}"
    );

    // Exit codes.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        HOST_FIREWALL.replace("destinationPorts: [22]", "destinationPorts: [0x]"),
    )
    .unwrap();
    let out = ctl(&d, &["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains(":7:"),
        "{err}"
    );
    assert_eq!(ctl(&d, &["get", "services", "nope"]).status.code(), Some(4));
    let dup = ctl(
        &d,
        &[
            "devices",
            "add",
            "csr1",
            "--platform",
            "iosxe",
            "--address",
            "10.0.0.1",
        ],
    );
    assert_eq!(dup.status.code(), Some(5), "{dup:?}");
    let toaster = ctl(
        &d,
        &[
            "devices",
            "add",
            "t1",
            "--platform",
            "toaster",
            "--address",
            "x",
        ],
    );
    assert_eq!(toaster.status.code(), Some(3));
    assert_eq!(
        ctl(&d, &["apply", "-f", "/nonexistent.yaml"]).status.code(),
        Some(3)
    );
    assert_eq!(ctl(&d, &["frobnicate"]).status.code(), Some(2));

    // Delete, then the device can go.
    let del = ok(&ctl(&d, &["delete", "service", "hosts-fw"]));
    assert!(del.contains("deleted (txn-"), "{del}");
    assert_eq!(
        ctl(&d, &["delete", "service", "hosts-fw"]).status.code(),
        Some(4)
    );
    ok(&ctl(&d, &["devices", "remove", "asa1"]));
    assert_eq!(ctl(&d, &["get", "devices", "asa1"]).status.code(), Some(4));
}

#[test]
fn unreachable_server_exits_6() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_rampartctl"))
        .args([
            "--insecure",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "get",
            "services",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach rampartd"));
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn tokens_users_audit_and_secrets_commands() {
    let d = start();
    let tmp = tempfile::tempdir().unwrap();

    let me = json_of(&ctl(&d, &["-o", "json", "whoami"]));
    assert_eq!(me["user"], "bootstrap-admin");
    assert_eq!(me["role"], "admin");

    // A tenant token, shown once; the listing never shows a secret.
    let created = json_of(&ctl(
        &d,
        &[
            "-o", "json", "tokens", "create", "--name", "ci", "--role", "tenant", "--tenant",
            "beta", "--ttl", "24h",
        ],
    ));
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rpt_"), "{created}");
    let listed = ok(&ctl(&d, &["-o", "json", "tokens", "list"]));
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "{listed}"
    );
    let ci = json_of(&ctl_as(&d, &secret, &["-o", "json", "whoami"]));
    assert_eq!(
        (ci["role"].as_str(), ci["tenants"][0].as_str()),
        (Some("tenant"), Some("beta"))
    );

    // The tenant token cannot manage tokens: exit 7, naming the permission.
    let denied = ctl_as(&d, &secret, &["tokens", "list"]);
    assert_eq!(denied.status.code(), Some(7), "{denied:?}");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("tokens:admin"));

    // A refused mutation (audited below).
    let refused = ctl_as(&d, &secret, &["devices", "remove", "csr9"]);
    assert_eq!(refused.status.code(), Some(7), "{refused:?}");

    // Device with secret credentials: stored, flagged, never printed.
    let creds = tmp.path().join("creds.yaml");
    std::fs::write(&creds, "username: admin\npassword: Hunter2-CTL-SECRET\n").unwrap();
    let added = ok(&ctl(
        &d,
        &[
            "-o",
            "json",
            "devices",
            "add",
            "csr9",
            "--platform",
            "iosxe",
            "--address",
            "192.0.2.9",
            "--credentials-file",
            creds.to_str().unwrap(),
        ],
    ));
    assert!(!added.contains("Hunter2-CTL-SECRET"), "{added}");
    let v: serde_json::Value = serde_json::from_str(&added).unwrap();
    assert_eq!(v[0]["hasCredentials"], true, "{added}");
    let rotated = ok(&ctl(&d, &["secrets", "rotate"]));
    assert!(rotated.contains("re-encrypted 0 of 1"), "{rotated}");

    // Bindings of certificate users.
    ok(&ctl(
        &d,
        &[
            "users", "bind", "alice", "--role", "operator", "--tenant", "acme",
        ],
    ));
    let b = json_of(&ctl(&d, &["-o", "json", "users", "list"]));
    assert_eq!(b[0]["user"], "alice");
    assert_eq!(
        ctl(&d, &["users", "bind", "bob", "--role", "root"])
            .status
            .code(),
        Some(3)
    );

    // Revocation takes effect at once.
    ok(&ctl(&d, &["tokens", "revoke", &id]));
    let gone = ctl_as(&d, &secret, &["whoami"]);
    assert_eq!(gone.status.code(), Some(7));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("revoked"),
        "{gone:?}"
    );

    // The audit log as JSON lines: one object per mutating call.
    let jsonl = ok(&ctl(&d, &["-o", "jsonl", "audit", "--since", "1h"]));
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let methods: Vec<&str> = records
        .iter()
        .filter_map(|r| r["method"].as_str())
        .collect();
    for m in [
        "AccessManager/CreateToken",
        "DeviceManager/AddDevice",
        "SecretManager/RotateSecrets",
        "AccessManager/BindUser",
        "AccessManager/RevokeToken",
    ] {
        assert!(methods.contains(&m), "{m} not audited: {methods:?}");
    }
    assert!(!jsonl.contains("Hunter2-CTL-SECRET") && !jsonl.contains(&secret));
    let only_ci = ok(&ctl(&d, &["-o", "json", "audit", "--user", "ci"]));
    assert!(
        only_ci.contains("devices:write") && only_ci.contains("PermissionDenied"),
        "the refused mutation is audited: {only_ci}"
    );
}

#[test]
fn missing_or_bad_credentials_exit_7() {
    let d = start();
    // No token anywhere (HOME is empty): Unauthenticated.
    let out = ctl_cmd(&d).args(["get", "services"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials"));
    let out = ctl_as(
        &d,
        "rpt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &["get", "services"],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // Without the CA the server certificate is not trusted: unreachable.
    let out = Command::new(env!("CARGO_BIN_EXE_rampartctl"))
        .env_clear()
        .env("HOME", d.data.parent().unwrap())
        .args(["--server", &d.server, "get", "services"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
}

/// A shell is needed to test its completion script; in CI a missing one
/// fails the run (scripts/install/00-base.sh installs zsh and fish).
fn shell(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "{name} is not installed: bash scripts/install/00-base.sh"
        );
        eprintln!("SKIP: completion test for {name}: not installed");
    }
    found
}

fn completion_script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rampartctl"))
        .args(["completion", shell])
        .output()
        .unwrap();
    ok(&out)
}

/// Each shell loads the script and completes a partial command line to
/// the commands and flags rampartctl really has.
#[test]
fn completion_scripts_complete_in_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for sh in ["bash", "zsh", "fish"] {
        std::fs::write(dir.path().join(sh), completion_script(sh)).unwrap();
    }
    if let Some(bash) = shell("bash") {
        let script = format!(
            "source {}/bash
             complete_line() {{ COMP_WORDS=($1); COMP_CWORD=$2; COMP_LINE=\"$1\"; \
               COMP_POINT=${{#COMP_LINE}}; _rampartctl rampartctl \"${{COMP_WORDS[$2]}}\" \
               \"${{COMP_WORDS[$2-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"; }}
             complete_line 'rampartctl che' 1
             complete_line 'rampartctl get transactions --pa' 3",
            dir.path().display()
        );
        let out = ok(&Command::new(bash).args(["-c", &script]).output().unwrap());
        let words: Vec<&str> = out.lines().collect();
        assert_eq!(words, ["check-sync", "--page-token"], "{out}");
    }
    if let Some(fish) = shell("fish") {
        let script = format!(
            "source {}/fish; complete -C 'rampartctl comp'; \
             complete -C 'rampartctl get transactions --page'; complete -C 'rampartctl --output='",
            dir.path().display()
        );
        let out = ok(&Command::new(fish).args(["-c", &script]).output().unwrap());
        let words: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(
            words,
            [
                "completion",
                "--page-token",
                "--output=json",
                "--output=jsonl",
                "--output=table",
                "--output=yaml",
            ],
            "{out}"
        );
    }
    if let Some(zsh) = shell("zsh") {
        // zsh completion needs an interactive line editor to run; loading
        // the script through compinit and finding it registered for
        // rampartctl is what a user's shell does at start.
        let script = format!(
            "fpath=({} $fpath); cp {}/zsh {}/_rampartctl; autoload -U compinit; \
             compinit -u -d {}/zcompdump; print -r -- ${{_comps[rampartctl]}}",
            dir.path().display(),
            dir.path().display(),
            dir.path().display(),
            dir.path().display()
        );
        let out = ok(&Command::new(zsh)
            .args(["-f", "-c", &script])
            .output()
            .unwrap());
        assert_eq!(out.trim(), "_rampartctl", "{out}");
        let text = std::fs::read_to_string(dir.path().join("zsh")).unwrap();
        assert!(
            text.contains("'--page-token=[") && text.contains("check-sync"),
            "zsh script lacks commands"
        );
    }
}

/// The documented limit is enforced before anything is sent: the server
/// named here does not exist, so reaching it would exit 6.
#[test]
fn documents_over_4_mib_are_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "# padding\n".repeat(600_000)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rampartctl"))
        .env_clear()
        .env("HOME", dir.path())
        .env(
            "RAMPART_SERVER",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .args(["apply", "-f", big.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("documents over 4 MiB are refused"), "{err}");
    assert!(err.contains("big.yaml"), "{err}");
}

/// History comes in pages: `--limit` bounds a page, the printed token
/// continues it, and changes are summarised unless `--full`.
#[test]
fn transaction_history_is_paged_and_summarised() {
    let d = start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("fw.yaml");
    std::fs::write(&spec, HOST_FIREWALL).unwrap();
    for _ in 0..3 {
        ok(&ctl(&d, &["apply", "-f", spec.to_str().unwrap()]));
    }
    let ids = |out: &Output| -> Vec<String> {
        let page: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
        page.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ids(&ctl(&d, &["-o", "json", "get", "transactions"]));
    assert_eq!(all.len(), 3, "{all:?}");
    let first = ctl(&d, &["-o", "json", "get", "transactions", "--limit", "2"]);
    assert_eq!(ids(&first), all[..2]);
    let hint = String::from_utf8_lossy(&first.stderr);
    let token = &all[1];
    assert!(
        hint.contains(&format!(
            "more: rampartctl get transactions --page-token {token}"
        )),
        "{hint}"
    );
    let rest = ctl(
        &d,
        &[
            "-o",
            "json",
            "get",
            "transactions",
            "--limit",
            "2",
            "--page-token",
            token,
        ],
    );
    assert_eq!(ids(&rest), all[2..]);
    assert!(!String::from_utf8_lossy(&rest.stderr).contains("more:"));
    let page: serde_json::Value = serde_json::from_str(&ok(&rest)).unwrap();
    // RFC 3339 in machine formats.
    let started = page[0]["started"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(started).is_ok(),
        "started {started:?} is not RFC 3339"
    );

    let full = ok(&ctl(&d, &["-o", "json", "get", "transactions", "--full"]));
    let summary = ok(&ctl(&d, &["-o", "json", "get", "transactions"]));
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let contents = |v: &serde_json::Value| -> Vec<String> {
        v[0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["content"].as_str().unwrap().to_owned())
            .collect()
    };
    let (full, summary) = (contents(&full), contents(&summary));
    assert!(!full.is_empty());
    for (f, s) in full.iter().zip(&summary) {
        if f.len() > 256 {
            assert!(s.starts_with("<summarised: "), "{s}");
            assert!(
                s.contains(&format!("rampartctl get transaction {}", all[0])),
                "{s}"
            );
        } else {
            assert_eq!(f, s);
        }
    }
    let bad = ctl(&d, &["get", "transactions", "--page-token", "next please"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("page_token:"));
}

/// The issue's own example: a port out of range is refused, naming the
/// device and the field, and nothing is stored.
#[test]
fn a_device_with_an_impossible_port_is_refused() {
    let d = start();
    let out = ctl(
        &d,
        &[
            "devices",
            "add",
            "bad1",
            "--platform",
            "iosxe",
            "--address",
            "10.10.0.21:99999",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("device bad1") && err.contains("address") && err.contains("not in 1-65535"),
        "{err}"
    );
    let listed = ok(&ctl(&d, &["-o", "json", "get", "devices"]));
    assert_eq!(listed.trim(), "[]");
}

// ===== the README's install steps, followed =====

/// A unit a README step started, as systemd would run it.
struct Unit {
    name: String,
    child: Child,
}

/// The README's "Running under systemd" steps, run as written in a
/// sandbox: the shell blocks are read from README.md, and only what a test
/// cannot do on a shared machine is rewritten, each rewrite listed here:
/// absolute paths move under a temporary root, the fixed ports become free
/// ones, `rampartd.example` is `localhost` (a name in the agent port's
/// certificate), `cargo build --release` is the build that made this test
/// (its binaries stand in for `target/release/`), and `systemctl enable
/// --now UNIT` starts the unit's `ExecStart` with its `EnvironmentFile` and
/// `StateDirectory` and waits for its sd_notify READY=1. The end state is
/// what the README promises: rampartd serves, and `rampartctl agents`
/// lists the enrolled agent online.
#[test]
fn the_readme_install_steps_work_as_written() {
    let target = rampartd().parent().unwrap().to_owned();
    let agent = target.join("rampart-agent");
    let root_ok = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !agent.exists() || !root_ok {
        assert!(
            std::env::var("CI").is_err(),
            "the README test needs root and rampart-agent built (cargo build --workspace)"
        );
        eprintln!("SKIP: the README test needs root and target/debug/rampart-agent");
        return;
    }
    let readme =
        std::fs::read_to_string(format!("{}/../README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let blocks = sh_blocks(&readme, "### Running under systemd");
    assert_eq!(
        blocks.len(),
        2,
        "README: the rampartd and the agent install blocks"
    );

    let sandbox = Sandbox::new(&target);
    let mut units: Vec<Unit> = Vec::new();
    for block in &blocks {
        let script = sandbox.rewrite(block);
        let out = sandbox.bash(&script);
        ok(&out);
        for name in std::fs::read_to_string(sandbox.root.join("started"))
            .unwrap_or_default()
            .lines()
        {
            if !units.iter().any(|u| u.name == name) {
                units.push(sandbox.start_unit(name));
            }
        }
    }
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["rampartd", "rampart-agent-managed"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = sandbox.bash("rampartctl -o json agents");
        let agents: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
        let online = agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "online" && a["labels"]["role"] == "web");
        if online {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never came online: {agents}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for mut u in units.into_iter().rev() {
        let _ = u.child.kill();
        let _ = u.child.wait();
    }
    let _ = std::fs::remove_dir_all(&sandbox.pin_root);
}

/// The ```sh blocks of the README section that starts with `heading`.
fn sh_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme.find(heading).expect("README section");
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b[..b.find("```").expect("closed block")].to_owned())
        .collect()
}

struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The repository copy the README's relative paths (`systemd/...`,
    /// `target/release/...`) are read from.
    src: PathBuf,
    pin_root: PathBuf,
    ports: Vec<(u16, u16)>,
}

impl Sandbox {
    fn new(target: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let src = root.join("src");
        std::fs::create_dir_all(src.join("target")).unwrap();
        std::os::unix::fs::symlink(target, src.join("target/release")).unwrap();
        let pin_root = PathBuf::from(format!("/sys/fs/bpf/rampart-readme-{}", std::process::id()));
        // rampartd API, rampartd metrics, agent port, agent metrics.
        let ports = [50051, 9464, 7443, 9469]
            .into_iter()
            .map(|p| (p, free_port()))
            .collect();
        let s = Self {
            _dir: dir,
            root,
            src,
            pin_root,
            ports,
        };
        let repo = PathBuf::from(format!("{}/..", env!("CARGO_MANIFEST_DIR")));
        std::fs::create_dir_all(s.src.join("systemd")).unwrap();
        for entry in std::fs::read_dir(repo.join("systemd")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let file = s.src.join("systemd").join(path.file_name().unwrap());
            std::fs::write(file, s.rewrite(&text)).unwrap();
        }
        s
    }

    /// The sandbox's rewrites (see the test's doc) of a README block or a
    /// shipped file.
    fn rewrite(&self, text: &str) -> String {
        let r = self.root.display();
        let mut out = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("cargo build --release"))
            .collect::<Vec<_>>()
            .join("\n");
        out = out.replace("/sys/fs/bpf/rampart", &self.pin_root.display().to_string());
        for dir in ["/etc/", "/usr/local/bin/", "/var/lib/"] {
            out = out.replace(&format!(" {dir}"), &format!(" {r}{dir}"));
            out = out.replace(&format!("={dir}"), &format!("={r}{dir}"));
            out = out.replace(&format!("> {dir}"), &format!("> {r}{dir}"));
        }
        out = out.replace("<rampartd data_dir>", &format!("{r}/var/lib/rampart"));
        out = out.replace("rampartd.example", "localhost");
        for (from, to) in &self.ports {
            out = out.replace(&format!(":{from}"), &format!(":{to}"));
        }
        out + "\n"
    }

    /// Runs a script with the sandbox's PATH and a `systemctl` that
    /// records what it is asked to start.
    fn bash(&self, script: &str) -> Output {
        let r = &self.root;
        let prelude = format!(
            "set -euo pipefail\n\
             systemctl() {{ case \"$1\" in daemon-reload) ;; \
               enable) [ \"$2\" = --now ] && echo \"$3\" >> {r}/started ;; \
               *) echo \"systemctl $*: not in the sandbox\" >&2; return 1 ;; esac; }}\n\
             mkdir -p {r}/etc/systemd/system {r}/usr/local/bin {r}/var/lib\n",
            r = r.display()
        );
        let api = self.ports[0].1;
        Command::new("bash")
            .args(["-c", &format!("{prelude}{script}")])
            .current_dir(&self.src)
            .env_clear()
            .env(
                "PATH",
                format!("{}/usr/local/bin:/usr/bin:/bin", r.display()),
            )
            .env("HOME", r)
            .env("RAMPART_SERVER", format!("https://127.0.0.1:{api}"))
            .env("RAMPARTD_DATA_DIR", r.join("var/lib/rampart"))
            .output()
            .unwrap()
    }

    /// Starts a unit the README enabled, as systemd would, and waits for
    /// its READY=1.
    fn start_unit(&self, name: &str) -> Unit {
        let unit_file = self.root.join(format!("etc/systemd/system/{name}.service"));
        let unit = std::fs::read_to_string(&unit_file)
            .unwrap_or_else(|e| panic!("{}: {e}", unit_file.display()));
        let key = |k: &str| {
            unit.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_owned)
        };
        let exec = key("ExecStart").expect("ExecStart");
        let mut argv = exec.split_whitespace();
        let mut cmd = Command::new(argv.next().unwrap());
        cmd.args(argv)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(state) = key("StateDirectory") {
            cmd.env("STATE_DIRECTORY", self.root.join("var/lib").join(state));
        }
        if let Some(file) = key("EnvironmentFile") {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                let (k, v) = line.split_once('=').expect("KEY=value");
                cmd.env(k, v);
            }
        }
        let notify_path = self.root.join(format!("{name}.notify"));
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        cmd.env("NOTIFY_SOCKET", &notify_path);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {exec}: {e}"));
        let mut buf = [0u8; 4096];
        loop {
            let n = notify
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{name} never notified READY=1: {e}"));
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        Unit {
            name: name.to_owned(),
            child,
        }
    }
}

/// Every page is scoped: a tenant caller paging one transaction at a time
/// through a history interleaved with another tenant's sees only its own,
/// and the pages end when its own do.
#[test]
fn every_history_page_is_scoped_to_the_callers_tenants() {
    let d = start();
    let dir = tempfile::tempdir().unwrap();
    let beta = dir.path().join("beta.yaml");
    let alpha = dir.path().join("alpha.yaml");
    std::fs::write(&beta, HOST_FIREWALL).unwrap();
    std::fs::write(
        &alpha,
        HOST_FIREWALL.replace(
            "{name: hosts-fw, tenant: beta}",
            "{name: alpha-fw, tenant: alpha}",
        ),
    )
    .unwrap();
    for spec in [&beta, &alpha, &beta, &alpha] {
        ok(&ctl(&d, &["apply", "-f", spec.to_str().unwrap()]));
    }
    let created = ok(&ctl(
        &d,
        &[
            "-o", "json", "tokens", "create", "--name", "b", "--role", "tenant", "--tenant", "beta",
        ],
    ));
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let token = created["secret"].as_str().unwrap();
    let mut seen = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..4 {
        let mut args = vec!["-o", "json", "get", "transactions", "--limit", "1"];
        if let Some(t) = &page_token {
            args.extend(["--page-token", t.as_str()]);
        }
        let out = ctl_as(&d, token, &args);
        let page: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
        for t in page.as_array().unwrap() {
            let services: Vec<&str> = t["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            assert_eq!(services, ["beta/hosts-fw"], "{t}");
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        let hint = String::from_utf8_lossy(&out.stderr).into_owned();
        page_token = hint
            .lines()
            .find_map(|l| l.strip_prefix("more: rampartctl get transactions --page-token "))
            .map(str::to_owned);
        if page_token.is_none() {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "beta's two transactions, one per page: {seen:?}"
    );
    assert!(
        page_token.is_none(),
        "a page token past the caller's last transaction"
    );
}
