//! The shipped agent units (standalone and managed) keep the privileges
//! minimal. `systemd-analyze verify` and the exposure scores of every unit
//! are checked by `controller/tests/systemd_units.rs`.

const STANDALONE: &str = include_str!("../../systemd/rampart-agent.service");
const MANAGED: &str = include_str!("../../systemd/rampart-agent-managed.service");

fn static_checks(name: &str, unit: &str) {
    for want in [
        "Type=notify",
        "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RequiresMountsFor=/sys/fs/bpf",
        "Restart=on-failure",
        "KillMode=mixed",
    ] {
        assert!(unit.contains(want), "{name} lacks {want}");
    }
    let families = unit
        .lines()
        .find(|l| l.starts_with("RestrictAddressFamilies="))
        .unwrap_or_else(|| panic!("{name}: address families not restricted"));
    assert!(families.contains("AF_NETLINK"), "{name}: {families}");
    let settings: String = unit.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        !settings.contains("CAP_SYS_ADMIN"),
        "{name}: no CAP_SYS_ADMIN"
    );
}

#[test]
fn units_are_minimal() {
    static_checks("rampart-agent.service", STANDALONE);
    static_checks("rampart-agent-managed.service", MANAGED);
    for want in [
        "StateDirectory=rampart-agent",
        "StateDirectoryMode=0700",
        "EnvironmentFile=/etc/rampart/agent.env",
        "--state-dir /var/lib/rampart-agent",
        "Conflicts=rampart-agent.service",
    ] {
        assert!(MANAGED.contains(want), "managed unit lacks {want}");
    }
}
