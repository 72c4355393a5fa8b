//! `netconf-device`: the IOS-XE stand-in, Debian's yuma123 netconfd with
//! the Cisco 16.9.3 models behind a private sshd, in its own mount
//! namespace with a private /etc.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use crate::{
    runner::base::{
        Env, LabError, Launch, Pending, RUN_DIR, Ready, io, lab_env, launch, primary,
        random_secret, run_dir, step,
    },
    sys,
    topology::{self, Lab, Node, Role},
};

/// User netconfd runs as and the controller logs in as (exists only in
/// the device's private /etc).
pub const NETCONF_USER: &str = "rplab";
const NETCONF_UID: u32 = 47_010;

const NETCONF_LAUNCH: &str = r#"#!/bin/bash
# netconfd with the Cisco models behind a private sshd, in its own mount
# namespace with a private /etc (rampart-lab; same approach as the
# controller's test harness).
set -euo pipefail
T=$1; PORT=$2; MODS=$3; UID_=$4; USER_=$5
mount --make-rprivate /
# Drop the copies of namespace handles this mount namespace inherited, so
# it never keeps another lab's namespaces alive.
for f in /run/netns/*; do umount "$f" 2>/dev/null || true; done
cp -a /etc/. "$T/etc/"
echo "$USER_:x:$UID_:$UID_::$T/home:/bin/sh" >> "$T/etc/passwd"
echo "$USER_:x:$UID_:" >> "$T/etc/group"
echo "$USER_:$(cat "$T/pwhash"):19000:0:99999:7:::" >> "$T/etc/shadow"
mount --bind "$T/etc" /etc
mkdir -p /run/sshd
setpriv --reuid="$UID_" --regid="$UID_" --clear-groups env HOME="$T/home" \
  /usr/sbin/netconfd --ncxserver-sockname="$T/home/ncx.sock" --port="$PORT" \
  --modpath="$T/yang:/usr/share/yuma/modules" $MODS --no-startup --superuser="$USER_" \
  --log="$T/home/netconfd.log" --log-level=info &
for _ in $(seq 1 400); do [ -S "$T/home/ncx.sock" ] && break; sleep 0.025; done
[ -S "$T/home/ncx.sock" ] || { echo "netconfd did not start"; cat "$T/home/netconfd.log"; exit 1; }
exec /usr/sbin/sshd -D -e -f "$T/sshd_config"
"#;

/// Modules netconfd loads from the 16.9.3 set.
const NETCONF_MODULES: [&str; 4] = [
    "Cisco-IOS-XE-native",
    "Cisco-IOS-XE-acl",
    "Cisco-IOS-XE-nat",
    "Cisco-IOS-XE-bgp",
];

/// Starts netconfd+sshd on `n`; its login goes into `creds`.
pub(crate) fn start(
    lab: &Lab,
    n: &Node,
    env: &Env,
    creds: &mut BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    let dir = private_dir(lab, n, env)?;
    let password = login_and_host_key(n, &dir)?;
    let (_, _, port) = n.device().unwrap_or((Role::NetconfDevice, "iosxe", 830));
    let addr = primary(n);
    write_sshd_config(&dir, addr, port)?;
    let mods: Vec<String> = NETCONF_MODULES
        .iter()
        .map(|m| format!("--module={m}"))
        .collect();
    // netconfd binds no TCP port: `--port` is the SSH port it accepts
    // sessions for, which netconf-subsystem reports from its sockname.
    let args = [
        "-m".to_owned(),
        "bash".to_owned(),
        dir.join("launch.sh").display().to_string(),
        dir.display().to_string(),
        port.to_string(),
        mods.join(" "),
        NETCONF_UID.to_string(),
        NETCONF_USER.to_owned(),
    ];
    let p = launch(
        lab,
        n,
        env,
        Launch {
            process: "netconfd+sshd",
            log: "netconfd",
            program: Path::new("/usr/bin/unshare"),
            args: &args,
            env: &lab_env(lab),
            ready: Ready::Tcp(vec![SocketAddr::new(addr, port)]),
        },
    )?;
    creds.insert(
        topology::credentials_var(&n.name),
        format!("{NETCONF_USER}:{password}"),
    );
    Ok(p)
}

/// The device's private directory (its /etc, home, module farm and launch
/// script) under /run, not the state directory: the unprivileged server
/// user must reach its home, whatever the permissions of the checkout.
fn private_dir(lab: &Lab, n: &Node, env: &Env) -> Result<PathBuf, LabError> {
    let dir = run_dir(&lab.name).join(&n.name);
    for sub in ["etc", "home", "yang"] {
        fs::create_dir_all(dir.join(sub)).map_err(io(&dir))?;
    }
    for d in [PathBuf::from(RUN_DIR), run_dir(&lab.name), dir.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).map_err(io(&d))?;
    }
    std::os::unix::fs::chown(dir.join("home"), Some(NETCONF_UID), Some(NETCONF_UID))
        .map_err(io(&dir))?;
    // Module farm: symlinks to the models, plus the one file yuma123 needs
    // rewritten (`{,3}` is not a quantifier it accepts; `{0,3}` means the same).
    let yang = dir.join("yang");
    let entries = fs::read_dir(&env.cisco_yang).map_err(io(&env.cisco_yang))?;
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let fname = e.file_name();
        if path.extension().is_some_and(|x| x == "yang") && fname != "Cisco-IOS-XE-acl.yang" {
            let link = yang.join(&fname);
            if !link.exists() {
                std::os::unix::fs::symlink(&path, &link).map_err(io(&link))?;
            }
        }
    }
    let acl_src = env.cisco_yang.join("Cisco-IOS-XE-acl.yang");
    let acl = fs::read_to_string(&acl_src).map_err(io(&acl_src))?;
    fs::write(
        yang.join("Cisco-IOS-XE-acl.yang"),
        acl.replace("{,3}", "{0,3}"),
    )
    .map_err(io(&yang))?;
    fs::write(dir.join("launch.sh"), NETCONF_LAUNCH).map_err(io(&dir))?;
    Ok(dir)
}

/// A fresh password for [`NETCONF_USER`] (its hash for the private
/// /etc/shadow) and the SSH host key; the password.
fn login_and_host_key(n: &Node, dir: &Path) -> Result<String, LabError> {
    let password = random_secret();
    let hash = sys::run("openssl", &["passwd", "-6", &password])
        .map_err(step(&n.name, "hash the NETCONF password"))?;
    fs::write(dir.join("pwhash"), hash.trim()).map_err(io(dir))?;
    let hostkey = dir.join("hostkey");
    if !hostkey.exists() {
        sys::run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &n.name,
                "-f",
                &hostkey.display().to_string(),
            ],
        )
        .map_err(step(&n.name, "ssh host key"))?;
    }
    Ok(password)
}

/// sshd's configuration (the netconf subsystem) and the `known_hosts`
/// line rampartd trusts for it.
fn write_sshd_config(dir: &Path, addr: IpAddr, port: u16) -> Result<(), LabError> {
    let ncx_port = port;
    let t = dir.display();
    fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress {addr}\nHostKey {t}/hostkey\nPidFile {t}/sshd.pid\nUsePAM no\n\
             PasswordAuthentication yes\nPubkeyAuthentication yes\nStrictModes no\nAllowUsers {NETCONF_USER}\n\
             MaxSessions 100\nMaxStartups 100:30:200\n\
             Subsystem netconf \"/usr/sbin/netconf-subsystem --ncxserver-sockname={ncx_port}@{t}/home/ncx.sock\"\n"
        ),
    )
    .map_err(io(dir))?;
    let host_pub = fs::read_to_string(dir.join("hostkey.pub")).map_err(io(dir))?;
    let mut parts = host_pub.split_whitespace();
    let (kt, kb) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let known = if port == 22 {
        format!("{addr} {kt} {kb}\n")
    } else {
        format!("[{addr}]:{port} {kt} {kb}\n")
    };
    fs::write(dir.join("known_hosts"), known).map_err(io(dir))
}
