//! The shipped unit file passes `systemd-analyze verify` and keeps the
//! privileges minimal.

use std::process::Command;

const UNIT: &str = include_str!("../../systemd/rampart-agent.service");

#[test]
fn unit_verifies_and_is_minimal() {
    for want in [
        "Type=notify",
        "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RequiresMountsFor=/sys/fs/bpf",
        "Restart=on-failure",
    ] {
        assert!(UNIT.contains(want), "unit lacks {want}");
    }
    let families = UNIT
        .lines()
        .find(|l| l.starts_with("RestrictAddressFamilies="))
        .expect("address families restricted");
    assert!(families.contains("AF_NETLINK"), "{families}");
    let settings: String = UNIT.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!settings.contains("CAP_SYS_ADMIN"), "no CAP_SYS_ADMIN");

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze not installed; static checks only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the built binary.
    let unit = UNIT.replace(
        "/usr/local/bin/rampart-agent",
        env!("CARGO_BIN_EXE_rampart-agent"),
    );
    let path = dir.path().join("rampart-agent.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
