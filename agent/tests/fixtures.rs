//! Packet-fixture tests (katran style): a table of {description, packet,
//! expected verdict} run through the real XDP/TC programs with
//! BPF_PROG_TEST_RUN, against a policy that exercises every rule field.
//! Needs root (bpf syscalls and bpffs).

mod skip;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use rampart_agent::{
    fw::testrun::{Harness, TC_DROP, TC_PASS, XDP_DROP, XDP_PASS},
    packet::{self as p, ACK, FIN, ICMP, ICMPV6, RST, SYN, TCP, UDP},
};
use rampart_proto::v1::{Action, Direction, FirewallRule, HostPolicy, InterfacePolicy, PortRange};

fn root() -> bool {
    !skip::unless_root("BPF_PROG_TEST_RUN fixture tests need root (bpf syscalls, bpffs)")
}

fn harness() -> Harness {
    Harness::new(Path::new("/sys/fs/bpf")).expect("load programs (verifier accepted them)")
}

fn r(seq: u32, action: Action) -> FirewallRule {
    FirewallRule {
        sequence: seq,
        action: action as i32,
        ..Default::default()
    }
}

fn ports(first: u32, last: u32) -> Vec<PortRange> {
    vec![PortRange { first, last }]
}

/// The fixture policy: ingress default deny; egress default permit.
fn policy() -> HostPolicy {
    let mut rules = Vec::new();
    // 10: deny everything from 10.66.0.0/16 (before any permit).
    let mut x = r(10, Action::Deny);
    x.sources = vec!["10.66.0.0/16".into()];
    rules.push(x);
    // 20: permit TCP to 192.0.2.10 port 22 from 10.0.0.0/8.
    let mut x = r(20, Action::Permit);
    x.protocol = 6;
    x.sources = vec!["10.0.0.0/8".into()];
    x.destinations = vec!["192.0.2.10/32".into()];
    x.destination_ports = ports(22, 22);
    rules.push(x);
    // 30: permit UDP dst 5000-5100 from source ports 1024-65535.
    let mut x = r(30, Action::Permit);
    x.protocol = 17;
    x.source_ports = ports(1024, 65535);
    x.destination_ports = ports(5000, 5100);
    rules.push(x);
    // 35: deny UDP dst 5050 (shadowed by 30: first match wins).
    let mut x = r(35, Action::Deny);
    x.protocol = 17;
    x.destination_ports = ports(5050, 5050);
    rules.push(x);
    // 40: permit ICMP echo request (type 8, code 0).
    let mut x = r(40, Action::Permit);
    x.protocol = 1;
    x.icmp_type = Some(8);
    x.icmp_code = Some(0);
    rules.push(x);
    // 50: permit ICMPv6 type 128 from 2001:db8:1::/48.
    let mut x = r(50, Action::Permit);
    x.protocol = 58;
    x.icmp_type = Some(128);
    x.sources = vec!["2001:db8:1::/48".into()];
    rules.push(x);
    // 60: permit TCP 443 to 2001:db8:ff::1.
    let mut x = r(60, Action::Permit);
    x.protocol = 6;
    x.destinations = vec!["2001:db8:ff::1/128".into()];
    x.destination_ports = ports(443, 443);
    rules.push(x);
    // 70: permit anything (any protocol) from 198.51.100.0/24: no L4 field,
    // so it also matches non-first fragments.
    let mut x = r(70, Action::Permit);
    x.sources = vec!["198.51.100.0/24".into()];
    rules.push(x);
    // 80: permit GRE (47) from anywhere.
    let mut x = r(80, Action::Permit);
    x.protocol = 47;
    rules.push(x);
    HostPolicy {
        version: 1,
        interfaces: vec![
            InterfacePolicy {
                interface: "fixture0".into(),
                direction: Direction::Ingress as i32,
                default_action: Action::Deny as i32,
                rules,
            },
            InterfacePolicy {
                interface: "fixture0".into(),
                direction: Direction::Egress as i32,
                default_action: Action::Permit as i32,
                rules: vec![{
                    let mut x = r(1, Action::Deny);
                    x.protocol = 17;
                    x.destination_ports = ports(53, 53);
                    x
                }],
            },
        ],
        conntrack_max: 0,
        ..Default::default()
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

struct Case {
    what: &'static str,
    packet: Vec<u8>,
    verdict: u32,
}

fn case(what: &'static str, packet: Vec<u8>, verdict: u32) -> Case {
    Case {
        what,
        packet,
        verdict,
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one table of fixtures reads best in one place"
)]
fn ingress_cases() -> Vec<Case> {
    let a = v4("10.1.2.3");
    let web = v4("192.0.2.10");
    let tcp22 = p::tcp(40000, 22, SYN);
    let mut cases = vec![
        case(
            "tcp 22 from 10/8 to 192.0.2.10 -> rule 20 permit",
            p::ipv4(a, web, TCP, &tcp22),
            XDP_PASS,
        ),
        case(
            "tcp 22 from 10.66/16 -> rule 10 deny first",
            p::ipv4(v4("10.66.1.1"), web, TCP, &tcp22),
            XDP_DROP,
        ),
        case(
            "tcp 23 from 10/8 -> no rule, default deny",
            p::ipv4(a, web, TCP, &p::tcp(40000, 23, SYN)),
            XDP_DROP,
        ),
        case(
            "tcp 22 from 11.0.0.1 -> source outside prefix",
            p::ipv4(v4("11.0.0.1"), web, TCP, &tcp22),
            XDP_DROP,
        ),
        case(
            "tcp 22 to 192.0.2.11 -> destination outside prefix",
            p::ipv4(a, v4("192.0.2.11"), TCP, &tcp22),
            XDP_DROP,
        ),
        case(
            "udp 22 (protocol mismatch with rule 20)",
            p::ipv4(a, web, UDP, &p::udp(40000, 22, 4)),
            XDP_DROP,
        ),
        case(
            "udp 5000 from sport 2000 -> rule 30",
            p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(2000, 5000, 4)),
            XDP_PASS,
        ),
        case(
            "udp 5100 (range end) -> rule 30",
            p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(2000, 5100, 4)),
            XDP_PASS,
        ),
        case(
            "udp 5101 (past range) -> default deny",
            p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(2000, 5101, 4)),
            XDP_DROP,
        ),
        case(
            "udp 5050 -> rule 30 shadows deny 35",
            p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(2000, 5050, 4)),
            XDP_PASS,
        ),
        case(
            "udp 5000 from sport 53 (< 1024) -> default deny",
            p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(53, 5000, 4)),
            XDP_DROP,
        ),
        case(
            "icmp echo request -> rule 40",
            p::ipv4(v4("8.8.8.8"), web, ICMP, &p::icmp(8, 0, 7)),
            XDP_PASS,
        ),
        case(
            "icmp echo request code 1 -> code mismatch",
            p::ipv4(v4("8.8.8.8"), web, ICMP, &p::icmp(8, 1, 8)),
            XDP_DROP,
        ),
        case(
            "icmp timestamp (type 13) -> default deny",
            p::ipv4(v4("8.8.8.8"), web, ICMP, &p::icmp(13, 0, 7)),
            XDP_DROP,
        ),
        case(
            "gre from anywhere -> rule 80 (protocol only)",
            p::ipv4(v4("8.8.8.8"), web, 47, &[0u8; 8]),
            XDP_PASS,
        ),
        case("arp is never filtered", p::arp(), XDP_PASS),
        // IPv6.
        case(
            "icmpv6 echo from 2001:db8:1::5 -> rule 50",
            p::ipv6(
                v6("2001:db8:1::5"),
                v6("2001:db8:ff::1"),
                ICMPV6,
                &p::icmp(128, 0, 9),
            ),
            XDP_PASS,
        ),
        case(
            "icmpv6 echo from 2001:db8:2::5 -> default deny",
            p::ipv6(
                v6("2001:db8:2::5"),
                v6("2001:db8:ff::1"),
                ICMPV6,
                &p::icmp(128, 0, 9),
            ),
            XDP_DROP,
        ),
        case(
            "icmpv4 type 128 is not icmpv6",
            p::ipv4(v4("8.8.8.8"), web, ICMP, &p::icmp(128, 0, 7)),
            XDP_DROP,
        ),
        case(
            "tcp6 443 to 2001:db8:ff::1 -> rule 60",
            p::ipv6(
                v6("2001:db8:9::1"),
                v6("2001:db8:ff::1"),
                TCP,
                &p::tcp(40000, 443, SYN),
            ),
            XDP_PASS,
        ),
        case(
            "tcp6 443 to ::2 -> default deny",
            p::ipv6(
                v6("2001:db8:9::1"),
                v6("2001:db8:ff::2"),
                TCP,
                &p::tcp(40000, 443, SYN),
            ),
            XDP_DROP,
        ),
        case(
            "tcp6 443 behind hop-by-hop + destination options -> rule 60",
            p::ipv6_ext(
                v6("2001:db8:9::1"),
                v6("2001:db8:ff::1"),
                0,
                &[p::ext_opts(60), p::ext_opts(TCP)].concat(),
                &p::tcp(40000, 443, SYN),
            ),
            XDP_PASS,
        ),
        case(
            "tcp6 444 behind extension headers -> default deny",
            p::ipv6_ext(
                v6("2001:db8:9::1"),
                v6("2001:db8:ff::1"),
                0,
                &p::ext_opts(TCP),
                &p::tcp(40000, 444, SYN),
            ),
            XDP_DROP,
        ),
        // VLAN.
        case(
            "802.1Q tagged tcp 22 -> rule 20",
            p::vlan(&p::ipv4(a, web, TCP, &tcp22), 100, false),
            XDP_PASS,
        ),
        case(
            "802.1Q tagged tcp 23 -> default deny",
            p::vlan(&p::ipv4(a, web, TCP, &p::tcp(1, 23, SYN)), 100, false),
            XDP_DROP,
        ),
        case(
            "QinQ tagged udp 5000 -> rule 30",
            p::vlan(
                &p::vlan(
                    &p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(2000, 5000, 4)),
                    10,
                    false,
                ),
                20,
                true,
            ),
            XDP_PASS,
        ),
        case(
            "QinQ tagged icmpv6 from 2001:db8:1::1",
            p::vlan(
                &p::vlan(
                    &p::ipv6(v6("2001:db8:1::1"), v6("::1"), ICMPV6, &p::icmp(128, 0, 1)),
                    10,
                    false,
                ),
                20,
                true,
            ),
            XDP_PASS,
        ),
        // Fragments.
        case(
            "ipv4 first fragment (MF) with tcp 22 header -> rule 20",
            p::ipv4_frag(a, web, TCP, 0x2000, &tcp22),
            XDP_PASS,
        ),
        case(
            "ipv4 non-first fragment tcp -> only L4-free rules; none -> deny",
            p::ipv4_frag(a, web, TCP, 0x0010, &[0u8; 16]),
            XDP_DROP,
        ),
        case(
            "ipv4 non-first fragment from 198.51.100.7 -> rule 70 (no L4 fields)",
            p::ipv4_frag(v4("198.51.100.7"), web, UDP, 0x0010, &[0u8; 16]),
            XDP_PASS,
        ),
        case(
            "ipv4 non-first fragment of udp 5000 is not matched by port rule 30",
            p::ipv4_frag(v4("8.8.8.8"), web, UDP, 0x0004, &p::udp(2000, 5000, 8)),
            XDP_DROP,
        ),
        case(
            "ipv6 first fragment of tcp 443 -> rule 60",
            p::ipv6_ext(
                v6("2001:db8:9::1"),
                v6("2001:db8:ff::1"),
                44,
                &p::ext_frag(TCP, 0, true),
                &p::tcp(40000, 443, SYN),
            ),
            XDP_PASS,
        ),
        case(
            "ipv6 non-first fragment of tcp -> deny (L4 unknown)",
            p::ipv6_ext(
                v6("2001:db8:9::1"),
                v6("2001:db8:ff::1"),
                44,
                &p::ext_frag(TCP, 8, false),
                &[0u8; 16],
            ),
            XDP_DROP,
        ),
    ];
    // Malformed frames: never crash, never pass by accident.
    let good = p::ipv4(a, web, TCP, &tcp22);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    cases.push(case(
        "ipv4 IHL 4 (< 5) -> malformed drop",
        bad_ihl,
        XDP_DROP,
    ));
    let mut big_ihl = good.clone();
    big_ihl[14] = 0x4f;
    cases.push(case(
        "ipv4 IHL 15 beyond the datagram -> malformed drop",
        big_ihl,
        XDP_DROP,
    ));
    let mut ver = good.clone();
    ver[14] = 0x65;
    cases.push(case(
        "ethertype ipv4 with version 6 -> malformed drop",
        ver,
        XDP_DROP,
    ));
    cases.push(case(
        "truncated ipv4 header (frame ends at 30 bytes)",
        good[..30].to_vec(),
        XDP_DROP,
    ));
    cases.push(case(
        "truncated tcp header (10 of 20 bytes)",
        {
            let mut t = p::ipv4(a, web, TCP, &tcp22[..10]);
            // Consistent total length, but the TCP header itself is short.
            t.truncate(14 + 20 + 10);
            t
        },
        XDP_DROP,
    ));
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x40;
    cases.push(case(
        "tcp data offset 4 (< 5) -> malformed drop",
        doff,
        XDP_DROP,
    ));
    let mut tot = good.clone();
    tot[16..18].copy_from_slice(&1500u16.to_be_bytes());
    cases.push(case(
        "ipv4 total length beyond the frame -> malformed drop",
        tot,
        XDP_DROP,
    ));
    let mut tot_small = good.clone();
    tot_small[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(case(
        "ipv4 total length < header length -> malformed drop",
        tot_small,
        XDP_DROP,
    ));
    cases.push(case(
        "udp header cut to 4 bytes",
        p::ipv4(v4("8.8.8.8"), web, UDP, &p::udp(2000, 5000, 0)[..4]),
        XDP_DROP,
    ));
    cases.push(case(
        "ethernet header only, ethertype ipv4",
        good[..14].to_vec(),
        XDP_DROP,
    ));
    let v6good = p::ipv6(
        v6("2001:db8:9::1"),
        v6("2001:db8:ff::1"),
        TCP,
        &p::tcp(40000, 443, SYN),
    );
    cases.push(case(
        "truncated ipv6 header",
        v6good[..40].to_vec(),
        XDP_DROP,
    ));
    let mut plen = v6good.clone();
    plen[18..20].copy_from_slice(&2000u16.to_be_bytes());
    cases.push(case("ipv6 payload length beyond the frame", plen, XDP_DROP));
    let nine: Vec<u8> = (0..9).flat_map(|_| p::ext_opts(60)).collect();
    cases.push(case(
        "ipv6 chain of 9 extension headers (limit 8) -> malformed drop",
        p::ipv6_ext(
            v6("2001:db8:1::1"),
            v6("::1"),
            60,
            &nine,
            &p::icmp(128, 0, 1),
        ),
        XDP_DROP,
    ));
    cases.push(case(
        "ipv6 extension header claiming more bytes than the packet",
        p::ipv6_ext(
            v6("2001:db8:1::1"),
            v6("::1"),
            0,
            &[60, 200, 0, 0, 0, 0, 0, 0],
            &[],
        ),
        XDP_DROP,
    ));
    cases.push(case(
        "vlan tag with truncated inner ethertype",
        p::vlan(&p::arp(), 5, false)[..16].to_vec(),
        XDP_DROP,
    ));
    cases
}

#[test]
fn xdp_ingress_fixtures() {
    if !root() {
        return;
    }
    let mut h = harness();
    h.apply(&policy()).expect("apply fixture policy");
    let mut failures = Vec::new();
    for c in ingress_cases() {
        let got = h
            .xdp(&c.packet)
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        if got != c.verdict {
            failures.push(format!("{}: expected {}, got {got}", c.what, c.verdict));
        }
    }
    assert!(
        failures.is_empty(),
        "fixture failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn tc_egress_fixtures() {
    if !root() {
        return;
    }
    let mut h = harness();
    h.apply(&policy()).unwrap();
    let a = v4("192.0.2.10");
    let cases = [
        case(
            "udp 53 out -> egress rule 1 deny",
            p::ipv4(a, v4("9.9.9.9"), UDP, &p::udp(3333, 53, 8)),
            TC_DROP,
        ),
        case(
            "udp 54 out -> default permit",
            p::ipv4(a, v4("9.9.9.9"), UDP, &p::udp(3333, 54, 8)),
            TC_PASS,
        ),
        case(
            "tcp 53 out -> default permit",
            p::ipv4(a, v4("9.9.9.9"), TCP, &p::tcp(3333, 53, SYN)),
            TC_PASS,
        ),
        case(
            "udp6 53 out -> deny",
            p::ipv6(
                v6("2001:db8::1"),
                v6("2001:db8::53"),
                UDP,
                &p::udp(3333, 53, 8),
            ),
            TC_DROP,
        ),
        case("non-IP out -> pass", vec![0u8; 20], TC_PASS),
        case(
            "ipv4 with IHL 4 out -> drop",
            {
                let mut x = p::ipv4(a, v4("9.9.9.9"), UDP, &p::udp(1, 54, 8));
                x[14] = 0x44;
                x
            },
            TC_DROP,
        ),
    ];
    for c in cases {
        let got = h
            .tc(&c.packet)
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        assert_eq!(got, c.verdict, "{}", c.what);
    }
}

fn ingress_only(rules: Vec<FirewallRule>) -> HostPolicy {
    HostPolicy {
        version: 1,
        interfaces: vec![InterfacePolicy {
            interface: "fixture0".into(),
            direction: Direction::Ingress as i32,
            default_action: Action::Deny as i32,
            rules,
        }],
        ..Default::default()
    }
}

fn from(seq: u32, action: Action, src: &str) -> FirewallRule {
    let mut x = r(seq, action);
    x.sources = vec![src.into()];
    x
}

/// Host prefixes (/32, /128) are answered by the exact-match hash, other
/// addresses by the LPM trie, unconstrained fields by constant bitmaps:
/// every path must give the trie's first match, and a policy swap must not
/// leave a previous generation's host entries behind.
#[test]
fn exact_match_hash_and_constant_fields_keep_first_match() {
    if !root() {
        return;
    }
    let mut h = harness();
    let mut r1 = from(1, Action::Deny, "10.1.2.3/32");
    r1.protocol = 17;
    r1.destination_ports = ports(53, 53);
    let mut r7 = r(7, Action::Permit);
    r7.destinations = vec!["192.0.2.77/32".into()];
    let a = ingress_only(vec![
        r1,
        from(2, Action::Permit, "10.1.2.0/24"),
        from(3, Action::Deny, "10.1.2.4/32"),
        from(4, Action::Permit, "10.9.9.9/32"),
        from(5, Action::Deny, "2001:db8::3/128"),
        from(6, Action::Permit, "2001:db8::/64"),
        r7,
    ]);
    h.apply(&a).unwrap();
    let d = v4("192.0.2.1");
    let d6 = v6("2001:db8:ff::1");
    // Distinct source ports: a passed packet creates a conntrack entry that
    // would decide a later packet of the same flow.
    let cases = [
        case(
            "exact hit, host rule 1 (udp 53) -> drop",
            p::ipv4(v4("10.1.2.3"), d, UDP, &p::udp(1001, 53, 8)),
            XDP_DROP,
        ),
        case(
            "exact hit inherits the /24 rule 2 -> pass",
            p::ipv4(v4("10.1.2.3"), d, UDP, &p::udp(1002, 54, 8)),
            XDP_PASS,
        ),
        case(
            "exact hit, but /24 rule 2 comes before host rule 3 -> pass",
            p::ipv4(v4("10.1.2.4"), d, UDP, &p::udp(1003, 54, 8)),
            XDP_PASS,
        ),
        case(
            "exact miss, trie /24 -> pass",
            p::ipv4(v4("10.1.2.5"), d, UDP, &p::udp(1004, 54, 8)),
            XDP_PASS,
        ),
        case(
            "exact hit rule 4 -> pass",
            p::ipv4(v4("10.9.9.9"), d, TCP, &p::tcp(1005, 80, SYN)),
            XDP_PASS,
        ),
        case(
            "exact miss, trie root -> default deny",
            p::ipv4(v4("10.9.9.8"), d, TCP, &p::tcp(1006, 80, SYN)),
            XDP_DROP,
        ),
        case(
            "/128 exact hit rule 5 -> drop",
            p::ipv6(v6("2001:db8::3"), d6, UDP, &p::udp(1007, 54, 8)),
            XDP_DROP,
        ),
        case(
            "/128 exact miss, trie /64 -> pass",
            p::ipv6(v6("2001:db8::4"), d6, UDP, &p::udp(1008, 54, 8)),
            XDP_PASS,
        ),
        case(
            "/128 exact miss, trie root -> deny",
            p::ipv6(v6("2001:db9::1"), d6, UDP, &p::udp(1009, 54, 8)),
            XDP_DROP,
        ),
        case(
            "destination exact hit rule 7 -> pass",
            p::ipv4(v4("10.50.0.1"), v4("192.0.2.77"), UDP, &p::udp(1010, 54, 8)),
            XDP_PASS,
        ),
        case(
            "destination exact miss -> deny",
            p::ipv4(v4("10.50.0.1"), v4("192.0.2.78"), UDP, &p::udp(1011, 54, 8)),
            XDP_DROP,
        ),
    ];
    for c in cases {
        let got = h
            .xdp(&c.packet)
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        assert_eq!(got, c.verdict, "{}", c.what);
    }

    // Swap twice: the second write reuses the generation that held `a`. A
    // host entry of `a` left behind (10.1.2.3 -> rules {1, 2}) would match
    // rule 0 of `b` here.
    let b = ingress_only(vec![
        from(1, Action::Permit, "10.1.2.9/32"),
        from(2, Action::Permit, "10.200.0.0/16"),
    ]);
    h.apply(&b).unwrap();
    h.apply(&b).unwrap();
    let cases = [
        case(
            "old host entry gone -> default deny",
            p::ipv4(v4("10.1.2.3"), d, UDP, &p::udp(2001, 54, 8)),
            XDP_DROP,
        ),
        case(
            "new host rule -> pass",
            p::ipv4(v4("10.1.2.9"), d, UDP, &p::udp(2002, 54, 8)),
            XDP_PASS,
        ),
        case(
            "new /16 rule -> pass",
            p::ipv4(v4("10.200.1.1"), d, UDP, &p::udp(2003, 54, 8)),
            XDP_PASS,
        ),
    ];
    for c in cases {
        let got = h
            .xdp(&c.packet)
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        assert_eq!(got, c.verdict, "{}", c.what);
    }
}

#[test]
fn conntrack_lets_replies_in_and_drop_established_cuts_them() {
    if !root() {
        return;
    }
    let mut h = harness();
    let mut pol = policy();
    h.apply(&pol).unwrap();
    let me = v4("192.0.2.10");
    let peer = v4("203.0.113.9");
    // Unsolicited inbound from the peer: default deny.
    let reply = p::ipv4(peer, me, TCP, &p::tcp(80, 45000, SYN | ACK));
    assert_eq!(h.xdp(&reply).unwrap(), XDP_DROP, "no flow yet");
    // We connect out (egress default permit creates the flow) ...
    let out = p::ipv4(me, peer, TCP, &p::tcp(45000, 80, SYN));
    assert_eq!(h.tc(&out).unwrap(), TC_PASS);
    // ... so the reply is let in although ingress defaults to deny.
    assert_eq!(h.xdp(&reply).unwrap(), XDP_PASS, "reply of a tracked flow");
    // A different port of the same peer is still denied.
    let other = p::ipv4(peer, me, TCP, &p::tcp(81, 45000, SYN | ACK));
    assert_eq!(h.xdp(&other).unwrap(), XDP_DROP);
    // UDP and ICMP echo are tracked too.
    assert_eq!(
        h.tc(&p::ipv4(me, peer, UDP, &p::udp(4000, 4001, 4)))
            .unwrap(),
        TC_PASS
    );
    assert_eq!(
        h.xdp(&p::ipv4(peer, me, UDP, &p::udp(4001, 4000, 4)))
            .unwrap(),
        XDP_PASS
    );
    assert_eq!(
        h.tc(&p::ipv4(me, peer, ICMP, &p::icmp(8, 0, 77))).unwrap(),
        TC_PASS
    );
    assert_eq!(
        h.xdp(&p::ipv4(peer, me, ICMP, &p::icmp(0, 0, 77))).unwrap(),
        XDP_PASS
    );
    assert_eq!(
        h.xdp(&p::ipv4(peer, me, ICMP, &p::icmp(0, 0, 78))).unwrap(),
        XDP_DROP
    );

    // A plain deny rule for the peer does not cut the established flow ...
    let mut deny = r(1, Action::Deny);
    deny.sources = vec!["203.0.113.0/24".into()];
    pol.interfaces[0].rules.push(deny.clone());
    h.apply(&pol).unwrap();
    assert_eq!(
        h.xdp(&reply).unwrap(),
        XDP_PASS,
        "established flow survives a plain deny"
    );
    // ... one with drop_established does.
    pol.interfaces[0].rules.retain(|x| x.sequence != 1);
    deny.drop_established = true;
    pol.interfaces[0].rules.push(deny);
    h.apply(&pol).unwrap();
    assert_eq!(
        h.xdp(&reply).unwrap(),
        XDP_DROP,
        "drop_established cuts the flow"
    );
}

#[test]
fn tcp_rst_closes_the_flow() {
    if !root() {
        return;
    }
    let mut h = harness();
    h.apply(&policy()).unwrap();
    h.maps
        .set_timeouts(&rampart_agent::fw::maps::Timeouts {
            tcp_closed: std::time::Duration::from_millis(1),
            ..Default::default()
        })
        .unwrap();
    let me = v4("192.0.2.10");
    let peer = v4("203.0.113.9");
    let reply = p::ipv4(peer, me, TCP, &p::tcp(80, 45001, ACK));
    assert_eq!(
        h.tc(&p::ipv4(me, peer, TCP, &p::tcp(45001, 80, SYN)))
            .unwrap(),
        TC_PASS
    );
    assert_eq!(h.xdp(&reply).unwrap(), XDP_PASS);
    assert_eq!(
        h.tc(&p::ipv4(me, peer, TCP, &p::tcp(45001, 80, RST)))
            .unwrap(),
        TC_PASS
    );
    // Longer than one kernel tick (10 ms at HZ=100): within a tick the
    // program skips the timeout check.
    std::thread::sleep(std::time::Duration::from_millis(25));
    assert_eq!(h.xdp(&reply).unwrap(), XDP_DROP, "closed flow expired");
    // FIN from both sides closes too.
    assert_eq!(
        h.tc(&p::ipv4(me, peer, TCP, &p::tcp(45002, 80, SYN)))
            .unwrap(),
        TC_PASS
    );
    let r2 = p::ipv4(peer, me, TCP, &p::tcp(80, 45002, ACK | FIN));
    assert_eq!(h.xdp(&r2).unwrap(), XDP_PASS);
    assert_eq!(
        h.tc(&p::ipv4(me, peer, TCP, &p::tcp(45002, 80, ACK | FIN)))
            .unwrap(),
        TC_PASS
    );
    std::thread::sleep(std::time::Duration::from_millis(25));
    assert_eq!(h.xdp(&r2).unwrap(), XDP_DROP, "FIN/FIN flow expired");
    let stats = h.maps.ct_stats().unwrap();
    assert!(
        stats[rampart_common::ct_stat::CLOSED as usize] >= 2,
        "{stats:?}"
    );
}

#[test]
fn ten_thousand_rules_match_last_and_counters_count() {
    if !root() {
        return;
    }
    let mut h = harness();
    let rules: Vec<_> = (0..10_000u32)
        .map(|i| {
            let mut x = r(
                i,
                if i == 9_999 {
                    Action::Deny
                } else {
                    Action::Permit
                },
            );
            x.protocol = 17;
            x.sources = vec![format!(
                "10.{}.{}.{}/32",
                100 + (i >> 16),
                (i >> 8) & 255,
                i & 255
            )];
            x
        })
        .collect();
    let pol = HostPolicy {
        version: 2,
        interfaces: vec![InterfacePolicy {
            interface: "fixture0".into(),
            direction: Direction::Ingress as i32,
            default_action: Action::Permit as i32,
            rules,
        }],
        conntrack_max: 0,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let compiled = rampart_agent::fw::policy::compile(&pol, &|_| true).unwrap();
    let t1 = std::time::Instant::now();
    let i = &compiled.interfaces[0];
    let g = h.maps.apply(&i.ingress, &i.egress).unwrap();
    let took = t0.elapsed();
    eprintln!(
        "10,000 rules: compile {:?}, write+switch {:?}",
        t1 - t0,
        t1.elapsed()
    );
    // Debug builds compile ~10x slower than the agent's release build.
    let budget = if cfg!(debug_assertions) { 5 } else { 1 };
    assert!(
        took < std::time::Duration::from_secs(budget),
        "apply took {took:?}"
    );
    let last = p::ipv4(v4("10.100.39.15"), v4("192.0.2.1"), UDP, &p::udp(1, 2, 4));
    for _ in 0..3 {
        assert_eq!(h.xdp(&last).unwrap(), XDP_DROP, "rule 9999 denies");
    }
    let first = p::ipv4(v4("10.100.0.0"), v4("192.0.2.1"), UDP, &p::udp(1, 2, 4));
    assert_eq!(h.xdp(&first).unwrap(), XDP_PASS);
    let totals = h.maps.rule_totals(g * 2, 10_000).unwrap();
    assert_eq!(totals[9_999].packets, 3);
    assert_eq!(totals[9_999].bytes, 3 * last.len() as u64);
    assert_eq!(totals[0].packets, 1);
    assert_eq!(totals[5].packets, 0);
}

/// Policy with the rules given, all UDP, ingress, default deny.
fn udp_rules(rules: Vec<FirewallRule>) -> HostPolicy {
    ingress_only(
        rules
            .into_iter()
            .map(|mut x| {
                x.protocol = 17;
                x
            })
            .collect(),
    )
}

fn udp_rule(seq: u32, action: Action, sport: Option<u32>, dport: Option<u32>) -> FirewallRule {
    let mut x = r(seq, action);
    if let Some(p) = sport {
        x.source_ports = ports(p, p);
    }
    if let Some(p) = dport {
        x.destination_ports = ports(p, p);
    }
    x
}

fn run_cases(h: &mut Harness, label: &str, cases: &[(&str, Vec<u8>, u32)]) {
    for (what, packet, verdict) in cases {
        let got = h
            .xdp(packet)
            .unwrap_or_else(|e| panic!("{label}: {what}: {e}"));
        assert_eq!(got, *verdict, "{label}: {what}");
    }
}

/// An address field with at most four prefix lengths is answered by hash
/// probes (longest first, then the /0 root); a fifth length sends it to
/// the LPM trie. Both must give the same first match.
#[test]
fn prefix_hash_probes_and_trie_agree() {
    if !root() {
        return;
    }
    let mut h = harness();
    let mut r1 = from(1, Action::Deny, "10.0.0.0/8");
    r1.protocol = 17;
    r1.destination_ports = ports(7, 7);
    let base = vec![
        r1,
        from(2, Action::Permit, "10.1.0.0/16"),
        from(3, Action::Deny, "10.1.2.0/24"),
        from(4, Action::Permit, "10.1.2.3/32"),
        from(5, Action::Deny, "2001:db8::/32"),
        from(6, Action::Permit, "2001:db8:1::/48"),
    ];
    let mut five_lengths = base.clone();
    five_lengths.push(from(7, Action::Permit, "10.1.2.0/25"));
    let d = v4("192.0.2.1");
    let d6 = v6("2001:db8:ff::1");
    for (label, rules) in [("4 lengths: hash", base), ("5 lengths: trie", five_lengths)] {
        h.apply(&ingress_only(rules)).unwrap();
        // Each case a distinct flow: a passed packet creates conntrack state.
        let sport = if label.starts_with('4') { 3000 } else { 4000 };
        let cases = [
            (
                "/8 rule 1 before /32 rule 4",
                p::ipv4(v4("10.1.2.3"), d, UDP, &p::udp(sport, 7, 8)),
                XDP_DROP,
            ),
            (
                "/16 rule 2 before /24 and /32",
                p::ipv4(v4("10.1.2.3"), d, TCP, &p::tcp(sport + 1, 80, SYN)),
                XDP_PASS,
            ),
            (
                "/16 only",
                p::ipv4(v4("10.1.9.9"), d, TCP, &p::tcp(sport + 2, 80, SYN)),
                XDP_PASS,
            ),
            (
                "/8 rule is udp 7 only: root",
                p::ipv4(v4("10.9.0.1"), d, TCP, &p::tcp(sport + 3, 80, SYN)),
                XDP_DROP,
            ),
            (
                "no prefix: root",
                p::ipv4(v4("11.0.0.1"), d, TCP, &p::tcp(sport + 4, 80, SYN)),
                XDP_DROP,
            ),
            (
                "/32 deny before /48 permit",
                p::ipv6(v6("2001:db8:1::5"), d6, UDP, &p::udp(sport + 5, 9, 8)),
                XDP_DROP,
            ),
            (
                "outside both v6 prefixes",
                p::ipv6(v6("2001:db9::5"), d6, UDP, &p::udp(sport + 6, 9, 8)),
                XDP_DROP,
            ),
        ];
        run_cases(&mut h, label, &cases);
    }
}

/// Port classes whose rules lie in one bitmap word are stored inline in
/// the port arrays; wider ones in the `WIDE_BM` array, or in the `CLASSES`
/// hash when a table has more than `WIDE_SLOTS` of them. Every layout must
/// give the first match.
#[test]
fn port_slots_inline_wide_and_hashed_keep_first_match() {
    if !root() {
        return;
    }
    let mut h = harness();
    let src = v4("10.0.0.1");
    let d = v4("192.0.2.1");
    let udp = |sport: u16, dport: u16| p::ipv4(src, d, UDP, &p::udp(sport, dport, 8));

    // Every rule constrains both ports: single-rule classes are inline. Port
    // 53 has rules 0 and 70 (words 0 and 1): a wide class in WIDE_BM.
    let mut rules = vec![udp_rule(0, Action::Deny, Some(1), Some(53))];
    rules.push(udp_rule(1, Action::Permit, Some(777), Some(1)));
    for i in 2..70 {
        rules.push(udp_rule(i, Action::Deny, Some(5), Some(1000 + i)));
    }
    rules.push(udp_rule(70, Action::Permit, Some(1), Some(888)));
    rules.push(udp_rule(71, Action::Permit, Some(2), Some(53)));
    h.apply(&udp_rules(rules)).unwrap();
    let cases = [
        (
            "both ports inline, same word: rule 1",
            udp(777, 1),
            XDP_PASS,
        ),
        (
            "both inline, different words: no rule",
            udp(777, 888),
            XDP_DROP,
        ),
        (
            "wide sport 1 (rules 0, 70), inline dport 888: rule 70",
            udp(1, 888),
            XDP_PASS,
        ),
        ("wide dport 53, sport 1: rule 0 first", udp(1, 53), XDP_DROP),
        ("wide dport 53, sport 2: rule 71", udp(2, 53), XDP_PASS),
        ("inline filler rule 9", udp(5, 1009), XDP_DROP),
        ("empty port class", udp(5, 9999), XDP_DROP),
    ];
    run_cases(&mut h, "WIDE_BM", &cases);

    // 66 wide classes (> WIDE_SLOTS): port 2000+i has rules i (permit) and
    // 66+i (deny) in different words, so the table uses the CLASSES hash.
    let mut rules = Vec::new();
    for i in 0..66 {
        rules.push(udp_rule(i, Action::Permit, None, Some(2000 + i)));
    }
    for i in 0..66 {
        rules.push(udp_rule(66 + i, Action::Deny, None, Some(2000 + i)));
    }
    rules.push(udp_rule(132, Action::Permit, None, Some(3000)));
    h.apply(&udp_rules(rules)).unwrap();
    let cases = [
        ("hashed wide class: first rule 3", udp(6000, 2003), XDP_PASS),
        (
            "hashed wide class: first rule 65",
            udp(6001, 2065),
            XDP_PASS,
        ),
        ("inline single rule 132", udp(6002, 3000), XDP_PASS),
        ("no rule", udp(6003, 3001), XDP_DROP),
    ];
    run_cases(&mut h, "CLASSES", &cases);
}
