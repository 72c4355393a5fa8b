//! BPF_PROG_TEST_RUN fixtures for the load balancer: the real programs and
//! maps (written by `Balancer::apply`) on hand-made packets; outputs are
//! checked byte by byte (outer headers, lengths, checksums, the inner packet
//! untouched). Run in a private network namespace so the FIB lookup has no
//! route and the configured gateway MAC is used (deterministic output).

mod skip;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
};

use rampart_agent::{
    lb::{
        maglev::{self, Member},
        maps::{Balancer, LbOptions, LbProgram},
        service::{BackendSpec, Mode, ServiceSpec},
        testrun::harness,
    },
    packet,
};
use rampart_common::lb::{FlowKey, LB_FAMILY_V4, LB_FAMILY_V6, flow_hash, lb_stat};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const GW: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
const LB_SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const LB_SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 7);

fn skip() -> bool {
    skip::unless_root("lb fixtures need root (bpf, network namespace)")
}

/// Runs `f` in a thread inside a fresh, empty network namespace.
fn in_empty_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare only affects this thread.
        #[allow(unsafe_code, reason = "unshare(CLONE_NEWNET)")]
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare(CLONE_NEWNET)");
        let _ = std::fs::File::open("/proc/thread-self/ns/net").map(|f| f.as_raw_fd());
        f()
    })
    .join()
    .expect("test thread")
}

fn service(name: &str, vip: IpAddr, port: u16, backends: &[(IpAddr, u32)]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        address: vip,
        protocol: packet::TCP,
        port,
        backends: backends
            .iter()
            .map(|(a, w)| BackendSpec {
                address: *a,
                port: 0,
                weight: *w,
            })
            .collect(),
        mode: Mode::Ipip,
        maglev_table_size: 0,
    }
}

fn balancer() -> Balancer {
    let mut lb = harness(
        Path::new("/sys/fs/bpf"),
        LbOptions {
            max_vips: 4,
            src_v4: LB_SRC,
            src_v6: LB_SRC6,
            gw_mac: Some(GW),
            ..LbOptions::default()
        },
    )
    .expect("load lb object");
    let b = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 9, 0, i));
    let b6 = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, i));
    lb.apply(&[
        service("web", VIP.into(), 80, &[(b(1), 1), (b(2), 2), (b(3), 3)]),
        service("web6", VIP6.into(), 443, &[(b6(1), 1), (b6(2), 1)]),
    ])
    .expect("apply services");
    lb
}

fn csum_ok(h: &[u8]) -> bool {
    let mut s = 0u32;
    for c in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Which backend Maglev must pick for a flow (same table, same hash).
fn predicted(lb: &Balancer, svc: &str, key: &FlowKey) -> IpAddr {
    let s = lb.services().iter().find(|s| s.name == svc).unwrap();
    let members: Vec<Member> = s
        .backends
        .iter()
        .map(|b| Member {
            name: format!("{}:{}", b.address, s.port),
            weight: b.weight,
        })
        .collect();
    let size = maglev::table_size(0, members.len()).unwrap();
    let t = maglev::build(&members, size).unwrap();
    s.backends[t[(flow_hash(key) % size) as usize] as usize].address
}

fn v4_key(sport: u16) -> FlowKey {
    let mut k = FlowKey {
        sport,
        dport: 80,
        proto: packet::TCP,
        family: LB_FAMILY_V4,
        ..FlowKey::default()
    };
    k.src[..4].copy_from_slice(&CLIENT.octets());
    k.dst[..4].copy_from_slice(&VIP.octets());
    k
}

#[test]
fn ipv4_encapsulation_output() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        for sport in [40_000u16, 40_001, 51_234, 60_000] {
            let inner = packet::ipv4(
                CLIENT,
                VIP,
                packet::TCP,
                &packet::tcp(sport, 80, packet::SYN),
            );
            let r = lb.test_run(LbProgram::Balancer, &inner).unwrap();
            assert_eq!(r.verdict, XDP_TX, "sport {sport}");
            let o = &r.data;
            assert_eq!(o.len(), inner.len() + 20, "one outer IPv4 header added");
            assert_eq!(&o[0..6], &GW, "next hop is the gateway MAC");
            assert_eq!(
                &o[6..12],
                &inner[0..6],
                "source MAC is the address the packet came to"
            );
            assert_eq!(&o[12..14], &[0x08, 0x00]);
            let h = &o[14..34];
            assert_eq!(h[0], 0x45);
            let inner_total = u16::from_be_bytes([inner[16], inner[17]]);
            assert_eq!(
                u16::from_be_bytes([h[2], h[3]]),
                inner_total + 20,
                "outer total length"
            );
            assert_eq!(h[8], 64, "ttl");
            assert_eq!(h[9], 4, "protocol IPIP");
            assert!(csum_ok(h), "outer header checksum");
            assert_eq!(&h[12..16], &LB_SRC.octets());
            let want = predicted(&lb, "web", &v4_key(sport));
            let IpAddr::V4(want) = want else { panic!() };
            assert_eq!(
                &h[16..20],
                &want.octets(),
                "Maglev's backend for sport {sport}"
            );
            assert_eq!(&o[34..], &inner[14..], "inner packet untouched");
            // The flow is pinned: the same 5-tuple gives the same output.
            let again = lb.test_run(LbProgram::Balancer, &inner).unwrap();
            assert_eq!(again.data, r.data);
            // Decapsulation gives the inner packet back.
            let d = lb.test_run(LbProgram::Decap, o).unwrap();
            assert_eq!(d.verdict, XDP_PASS);
            assert_eq!(d.data.len(), inner.len());
            assert_eq!(&d.data[12..14], &[0x08, 0x00]);
            assert_eq!(&d.data[14..], &inner[14..]);
        }
        assert_eq!(lb.stat(lb_stat::FLOW_MISS), 4);
        assert_eq!(lb.stat(lb_stat::FLOW_HIT), 4);
        assert_eq!(lb.stat(lb_stat::TX), 8);
        assert_eq!(lb.stat(lb_stat::DECAP), 4);
        let t = lb.vip_totals("web").unwrap();
        assert_eq!((t.packets, t.new_flows), (8, 4));
        assert_eq!(lb.flow_count(), 4);
    });
}

#[test]
fn ipv6_encapsulation_output() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let inner = packet::ipv6(
            CLIENT6,
            VIP6,
            packet::TCP,
            &packet::tcp(41_000, 443, packet::SYN),
        );
        let r = lb.test_run(LbProgram::Balancer, &inner).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        let o = &r.data;
        assert_eq!(o.len(), inner.len() + 40);
        assert_eq!(&o[0..6], &GW);
        assert_eq!(&o[12..14], &[0x86, 0xdd]);
        let h = &o[14..54];
        assert_eq!(h[0] >> 4, 6);
        assert_eq!(
            u16::from_be_bytes([h[4], h[5]]) as usize,
            inner.len() - 14,
            "payload = inner header + payload"
        );
        assert_eq!(h[6], 41, "next header IPv6");
        assert_eq!(&h[8..24], &LB_SRC6.octets());
        let mut key = FlowKey {
            sport: 41_000,
            dport: 443,
            proto: packet::TCP,
            family: LB_FAMILY_V6,
            ..FlowKey::default()
        };
        key.src = CLIENT6.octets();
        key.dst = VIP6.octets();
        let IpAddr::V6(want) = predicted(&lb, "web6", &key) else {
            panic!()
        };
        assert_eq!(&h[24..40], &want.octets());
        assert_eq!(&o[54..], &inner[14..]);
        let d = lb.test_run(LbProgram::Decap, o).unwrap();
        assert_eq!(d.verdict, XDP_PASS);
        assert_eq!(&d.data[14..], &inner[14..]);
    });
}

#[test]
fn non_vip_traffic_passes_untouched() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "other port",
                packet::ipv4(
                    CLIENT,
                    VIP,
                    packet::TCP,
                    &packet::tcp(1234, 81, packet::SYN),
                ),
            ),
            (
                "udp to a tcp vip",
                packet::ipv4(CLIENT, VIP, packet::UDP, &packet::udp(1234, 80, 10)),
            ),
            (
                "other address",
                packet::ipv4(
                    CLIENT,
                    Ipv4Addr::new(198, 51, 100, 11),
                    packet::TCP,
                    &packet::tcp(1, 80, packet::SYN),
                ),
            ),
            (
                "icmp",
                packet::ipv4(CLIENT, VIP, packet::ICMP, &packet::icmp(8, 0, 1)),
            ),
            ("arp", packet::arp()),
            (
                "ipv6 other port",
                packet::ipv6(
                    CLIENT6,
                    VIP6,
                    packet::TCP,
                    &packet::tcp(1, 444, packet::SYN),
                ),
            ),
            (
                "vlan-tagged",
                packet::vlan(
                    &packet::ipv4(CLIENT, VIP, packet::TCP, &packet::tcp(1, 80, packet::SYN)),
                    7,
                    false,
                ),
            ),
        ];
        for (what, p) in &cases {
            let r = lb.test_run(LbProgram::Balancer, p).unwrap();
            assert_eq!(r.verdict, XDP_PASS, "{what}");
            assert_eq!(&r.data, p, "{what}: bytes unchanged");
            // The decapsulator leaves non-tunnel packets alone too.
            let d = lb.test_run(LbProgram::Decap, p).unwrap();
            assert_eq!((d.verdict, &d.data), (XDP_PASS, p), "{what} through decap");
        }
        assert_eq!(lb.stat(lb_stat::PASS_NON_VIP), cases.len() as u64);
        assert_eq!(lb.flow_count(), 0);
    });
}

#[test]
fn malformed_packets_dropped() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let good = packet::ipv4(CLIENT, VIP, packet::TCP, &packet::tcp(999, 80, packet::SYN));
        let mut bad_version = good.clone();
        bad_version[14] = 0x55;
        let mut short_ihl = good.clone();
        short_ihl[14] = 0x44;
        let mut long_total = good.clone();
        long_total[16..18].copy_from_slice(&200u16.to_be_bytes());
        // TCP header cut to 10 bytes (total length says so too).
        let short_tcp = packet::ipv4(
            CLIENT,
            VIP,
            packet::TCP,
            &packet::tcp(999, 80, packet::SYN)[..10],
        );
        let truncated_ip = good[..24].to_vec();
        let mut v6_long = packet::ipv6(
            CLIENT6,
            VIP6,
            packet::TCP,
            &packet::tcp(1, 443, packet::SYN),
        );
        v6_long[18..20].copy_from_slice(&500u16.to_be_bytes());
        let cases = [
            ("bad version", bad_version),
            ("ihl < 5", short_ihl),
            ("total length beyond frame", long_total),
            ("short tcp header", short_tcp),
            ("truncated ip header", truncated_ip),
            ("ipv6 payload beyond frame", v6_long),
            ("ethernet header only", good[..14].to_vec()),
        ];
        for (what, p) in &cases {
            let r = lb.test_run(LbProgram::Balancer, p).unwrap();
            assert_eq!(r.verdict, XDP_DROP, "{what}");
        }
        assert_eq!(lb.stat(lb_stat::MALFORMED), cases.len() as u64);
        // A fragment to the VIP carries no ports: passed to the kernel.
        let frag = packet::ipv4_frag(CLIENT, VIP, packet::TCP, 0x0010, &[0u8; 24]);
        assert_eq!(
            lb.test_run(LbProgram::Balancer, &frag).unwrap().verdict,
            XDP_PASS
        );
        assert_eq!(lb.stat(lb_stat::FRAGMENT), 1);
        assert_eq!(lb.flow_count(), 0, "nothing malformed created a flow");
    });
}

#[test]
fn down_backend_flows_move_and_empty_pool_drops() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let p = packet::ipv4(
            CLIENT,
            VIP,
            packet::TCP,
            &packet::tcp(45_000, 80, packet::SYN),
        );
        let first = lb.test_run(LbProgram::Balancer, &p).unwrap();
        let chosen = IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(&first.data[30..34]).unwrap(),
        ));
        lb.set_backend_down(chosen, 80, true).unwrap();
        let moved = lb.test_run(LbProgram::Balancer, &p).unwrap();
        assert_eq!(moved.verdict, XDP_TX);
        assert_ne!(
            &moved.data[30..34],
            &first.data[30..34],
            "flow left the down backend"
        );
        assert_eq!(lb.stat(lb_stat::REPICK), 1);
        // Back up: the flow stays where it moved (no second disruption).
        lb.set_backend_down(chosen, 80, false).unwrap();
        let stays = lb.test_run(LbProgram::Balancer, &p).unwrap();
        assert_eq!(&stays.data[30..34], &moved.data[30..34]);
        // Every backend down: the VIP drops and says why.
        for i in 1..=3 {
            lb.set_backend_down(IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)), 80, true)
                .unwrap();
        }
        let p2 = packet::ipv4(
            CLIENT,
            VIP,
            packet::TCP,
            &packet::tcp(45_001, 80, packet::SYN),
        );
        assert_eq!(
            lb.test_run(LbProgram::Balancer, &p2).unwrap().verdict,
            XDP_DROP
        );
        assert!(lb.stat(lb_stat::NO_BACKEND) >= 1);
    });
}

#[test]
fn bad_services_refused_and_nothing_applied() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let before = lb.services().to_vec();
        let mut mixed = service("mixed", VIP.into(), 8080, &[(IpAddr::V6(VIP6), 1)]);
        let err = lb.apply(&[mixed.clone()]).unwrap_err().to_string();
        assert!(
            err.contains("\"mixed\"") && err.contains("address family"),
            "{err}"
        );
        mixed.backends.clear();
        mixed.maglev_table_size = 1000;
        let err = lb.apply(&[mixed]).unwrap_err().to_string();
        assert!(err.contains("1000 is not prime"), "{err}");
        assert_eq!(lb.services(), &before[..]);
        let p = packet::ipv4(
            CLIENT,
            VIP,
            packet::TCP,
            &packet::tcp(45_000, 80, packet::SYN),
        );
        assert_eq!(
            lb.test_run(LbProgram::Balancer, &p).unwrap().verdict,
            XDP_TX,
            "old services still served"
        );
    });
}

// ===== DNAT mode =====

const TC_ACT_UNSPEC: u32 = u32::MAX; // -1 as the kernel returns it
const DNAT_PORT: u16 = 9090;

/// Sum of 16-bit words (odd length padded), not folded.
fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// (L3 offset, L4 offset, protocol, pseudo-header sum) of an Ethernet frame
/// carrying IPv4 (no options) or IPv6 with TCP/UDP directly.
fn l4_of(frame: &[u8]) -> (usize, usize, u8, u32) {
    let l4_len = |total: usize, l4: usize| (total - l4) as u32;
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let proto = frame[23];
            let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
            let total = 14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]));
            let pseudo = sum16(&frame[26..34]) + u32::from(proto) + l4_len(total, l4);
            (14, l4, proto, pseudo)
        }
        0x86DD => {
            let proto = frame[20];
            let total = 54 + usize::from(u16::from_be_bytes([frame[18], frame[19]]));
            let pseudo = sum16(&frame[22..54]) + u32::from(proto) + l4_len(total, 54);
            (14, 54, proto, pseudo)
        }
        other => panic!("not IP: {other:#x}"),
    }
}

fn csum_offset(proto: u8) -> usize {
    if proto == packet::TCP { 16 } else { 6 }
}

/// Fills a correct TCP/UDP checksum (the `packet` helpers leave it zero).
fn with_l4_csum(mut frame: Vec<u8>) -> Vec<u8> {
    let (_, l4, proto, pseudo) = l4_of(&frame);
    let co = l4 + csum_offset(proto);
    frame[co..co + 2].copy_from_slice(&[0, 0]);
    let mut c = !fold(pseudo + sum16(&frame[l4..]));
    if proto == packet::UDP && c == 0 {
        c = 0xffff;
    }
    frame[co..co + 2].copy_from_slice(&c.to_be_bytes());
    frame
}

/// Verifies the IPv4 header checksum (if IPv4) and the TCP/UDP checksum by
/// recomputation over the packet as it is.
fn checksums_ok(frame: &[u8]) -> Result<(), String> {
    let (_, l4, proto, pseudo) = l4_of(frame);
    if frame[12..14] == [0x08, 0x00] && !csum_ok(&frame[14..l4]) {
        return Err("IPv4 header checksum".into());
    }
    let co = l4 + csum_offset(proto);
    if proto == packet::UDP && frame[co..co + 2] == [0, 0] && frame[12..14] == [0x08, 0x00] {
        return Ok(()); // no UDP checksum
    }
    if fold(pseudo + sum16(&frame[l4..])) != 0xffff {
        return Err(format!(
            "{} checksum",
            if proto == 6 { "TCP" } else { "UDP" }
        ));
    }
    Ok(())
}

fn dnat_service(name: &str, vip: IpAddr, proto: u8, backends: &[IpAddr]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        address: vip,
        protocol: proto,
        port: 80,
        backends: backends
            .iter()
            .map(|a| BackendSpec {
                address: *a,
                port: DNAT_PORT,
                weight: 1,
            })
            .collect(),
        mode: Mode::Dnat,
        maglev_table_size: 0,
    }
}

fn dnat_balancer() -> Balancer {
    let mut lb = harness(
        Path::new("/sys/fs/bpf"),
        LbOptions {
            max_vips: 4,
            gw_mac: Some(GW),
            ..LbOptions::default()
        },
    )
    .expect("load lb object");
    let b = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 9, 0, i));
    let b6 = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, i));
    lb.apply(&[
        dnat_service("tcp", VIP.into(), packet::TCP, &[b(1), b(2), b(3)]),
        dnat_service("udp", VIP.into(), packet::UDP, &[b(1), b(2), b(3)]),
        dnat_service("tcp6", VIP6.into(), packet::TCP, &[b6(1), b6(2)]),
        dnat_service("udp6", VIP6.into(), packet::UDP, &[b6(1), b6(2)]),
    ])
    .expect("DNAT services are accepted");
    lb
}

/// Which backend Maglev picks for a DNAT flow of service `svc`.
fn dnat_predicted(lb: &Balancer, svc: &str, key: &FlowKey) -> IpAddr {
    let s = lb.services().iter().find(|s| s.name == svc).unwrap();
    let members: Vec<Member> = s
        .backends
        .iter()
        .map(|b| Member {
            name: format!("{}:{}", b.address, b.port),
            weight: b.weight,
        })
        .collect();
    let size = maglev::table_size(0, members.len()).unwrap();
    let t = maglev::build(&members, size).unwrap();
    s.backends[t[(flow_hash(key) % size) as usize] as usize].address
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            b
        }
        IpAddr::V6(v) => v.octets(),
    }
}

fn key_of(client: IpAddr, vip: IpAddr, sport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: addr16(client),
        dst: addr16(vip),
        sport,
        dport: 80,
        proto,
        family: if client.is_ipv4() {
            LB_FAMILY_V4
        } else {
            LB_FAMILY_V6
        },
        ..FlowKey::default()
    }
}

/// A client packet to the VIP with a valid L4 checksum and a payload.
fn client_packet(client: IpAddr, vip: IpAddr, proto: u8, sport: u16) -> Vec<u8> {
    let mut l4 = if proto == packet::TCP {
        packet::tcp(sport, 80, packet::SYN | packet::ACK)
    } else {
        packet::udp(sport, 80, 0)
    };
    l4.extend_from_slice(b"hello, backend!");
    if proto == packet::UDP {
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let f = match (client, vip) {
        (IpAddr::V4(c), IpAddr::V4(v)) => packet::ipv4(c, v, proto, &l4),
        (IpAddr::V6(c), IpAddr::V6(v)) => packet::ipv6(c, v, proto, &l4),
        _ => unreachable!(),
    };
    with_l4_csum(f)
}

/// Runs one DNAT round trip: client -> VIP through `rampart_lb`, then the
/// backend's reply through `rampart_lb_nat`; checks every byte that may and
/// may not change, and the checksums by recomputation.
fn dnat_round_trip(lb: &mut Balancer, svc: &str, client: IpAddr, vip: IpAddr, sport: u16) {
    let proto = lb
        .services()
        .iter()
        .find(|s| s.name == svc)
        .unwrap()
        .protocol;
    let v4 = client.is_ipv4();
    let (daddr, alen) = if v4 { (30, 4) } else { (38, 16) };
    let saddr = if v4 { 26 } else { 22 };
    let inp = client_packet(client, vip, proto, sport);
    checksums_ok(&inp).expect("input checksums");
    let r = lb.test_run(LbProgram::Balancer, &inp).unwrap();
    assert_eq!(r.verdict, XDP_TX, "{svc} sport {sport}");
    let o = &r.data;
    assert_eq!(o.len(), inp.len(), "DNAT keeps the length");
    assert_eq!(&o[0..6], &GW, "next hop is the gateway MAC");
    assert_eq!(&o[6..12], &inp[0..6], "source MAC: the address it came to");
    let want = dnat_predicted(lb, svc, &key_of(client, vip, sport, proto));
    assert_eq!(
        &o[daddr..daddr + alen],
        &addr16(want)[..alen],
        "{svc}: destination is Maglev's backend"
    );
    let (_, l4, _, _) = l4_of(o);
    assert_eq!(&o[l4..l4 + 2], &sport.to_be_bytes(), "source port kept");
    assert_eq!(&o[l4 + 2..l4 + 4], &DNAT_PORT.to_be_bytes(), "backend port");
    checksums_ok(o).unwrap_or_else(|e| panic!("{svc} sport {sport}: {e} wrong after DNAT"));
    // Everything but addresses, ports and checksums is untouched.
    let co = l4 + csum_offset(proto);
    for i in 12..o.len() {
        let changed = (daddr..daddr + alen).contains(&i)
            || (l4 + 2..l4 + 4).contains(&i)
            || (co..co + 2).contains(&i)
            || (v4 && (24..26).contains(&i));
        if !changed {
            assert_eq!(o[i], inp[i], "{svc}: byte {i} changed");
        }
    }
    // The reverse translation is recorded under the reply's 5-tuple.
    let reply_key = FlowKey {
        src: addr16(want),
        dst: addr16(client),
        sport: DNAT_PORT,
        dport: sport,
        proto,
        family: if v4 { LB_FAMILY_V4 } else { LB_FAMILY_V6 },
        ..FlowKey::default()
    };
    let nat = lb
        .nat_entry(&reply_key)
        .expect("reverse translation recorded");
    assert_eq!(nat.addr, addr16(vip));
    assert_eq!(nat.port, 80);
    // The backend's reply, as it arrives at the LB: backend:9090 -> client.
    let mut reply = o.clone();
    reply[saddr..saddr + alen].copy_from_slice(&addr16(want)[..alen]);
    reply[daddr..daddr + alen].copy_from_slice(&addr16(client)[..alen]);
    reply[l4..l4 + 2].copy_from_slice(&DNAT_PORT.to_be_bytes());
    reply[l4 + 2..l4 + 4].copy_from_slice(&sport.to_be_bytes());
    if v4 {
        reply[24..26].copy_from_slice(&[0, 0]);
        let c = !fold(sum16(&reply[14..34]));
        reply[24..26].copy_from_slice(&c.to_be_bytes());
    }
    let reply = with_l4_csum(reply);
    let back = lb.test_run_nat(&reply).unwrap();
    assert_eq!(back.verdict, TC_ACT_UNSPEC, "TC continues");
    let b = &back.data;
    assert_eq!(b.len(), reply.len());
    assert_eq!(
        &b[saddr..saddr + alen],
        &addr16(vip)[..alen],
        "source is the VIP"
    );
    assert_eq!(
        &b[l4..l4 + 2],
        &80u16.to_be_bytes(),
        "source port is the VIP's"
    );
    assert_eq!(&b[daddr..daddr + alen], &reply[daddr..daddr + alen]);
    assert_eq!(&b[l4 + 2..l4 + 4], &sport.to_be_bytes());
    checksums_ok(b)
        .unwrap_or_else(|e| panic!("{svc} reply sport {sport}: {e} wrong after reverse NAT"));
    assert_eq!(&b[l4 + 4..co], &reply[l4 + 4..co], "L4 header untouched");
    assert_eq!(&b[co + 2..], &reply[co + 2..], "rest and payload untouched");
}

#[test]
fn dnat_rewrites_with_valid_checksums_and_reverses() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = dnat_balancer();
        for sport in [40_000u16, 40_001, 51_234, 65_535] {
            dnat_round_trip(&mut lb, "tcp", CLIENT.into(), VIP.into(), sport);
            dnat_round_trip(&mut lb, "udp", CLIENT.into(), VIP.into(), sport);
            dnat_round_trip(&mut lb, "tcp6", CLIENT6.into(), VIP6.into(), sport);
            dnat_round_trip(&mut lb, "udp6", CLIENT6.into(), VIP6.into(), sport);
        }
        assert_eq!(lb.stat(lb_stat::DNAT), 16);
        assert_eq!(lb.stat(lb_stat::SNAT), 16);
        assert_eq!(lb.nat_count(), 16);
        assert_eq!(lb.stat(lb_stat::NAT_INSERT_FAIL), 0);
    });
}

#[test]
fn dnat_udp_without_checksum_stays_without() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = dnat_balancer();
        // IPv4 UDP with checksum 0 (none): the rewrite must not invent one.
        let mut l4 = packet::udp(33_333, 80, 4);
        l4[4..6].copy_from_slice(&12u16.to_be_bytes());
        let p = packet::ipv4(CLIENT, VIP, packet::UDP, &l4);
        let r = lb.test_run(LbProgram::Balancer, &p).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        assert_eq!(&r.data[40..42], &[0, 0], "UDP checksum still absent");
        assert!(csum_ok(&r.data[14..34]), "IPv4 header checksum");
        assert_eq!(&r.data[36..38], &DNAT_PORT.to_be_bytes());
    });
}

#[test]
fn reverse_nat_leaves_other_traffic_alone() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = dnat_balancer();
        // A flow through the VIP first, so the table is not empty.
        let p = client_packet(CLIENT.into(), VIP.into(), packet::TCP, 41_000);
        assert_eq!(
            lb.test_run(LbProgram::Balancer, &p).unwrap().verdict,
            XDP_TX
        );
        let b1 = Ipv4Addr::new(10, 9, 0, 1);
        for (what, pkt) in [
            (
                "reply to another client port",
                with_l4_csum(packet::ipv4(
                    b1,
                    CLIENT,
                    packet::TCP,
                    &packet::tcp(DNAT_PORT, 41_001, packet::ACK),
                )),
            ),
            (
                "health-check reply from the backend's own port",
                with_l4_csum(packet::ipv4(
                    b1,
                    Ipv4Addr::new(10, 9, 0, 254),
                    packet::TCP,
                    &packet::tcp(DNAT_PORT, 50_000, packet::ACK),
                )),
            ),
            (
                "ICMP",
                packet::ipv4(b1, CLIENT, packet::ICMP, &packet::icmp(0, 0, 7)),
            ),
            ("ARP", packet::arp()),
        ] {
            let r = lb.test_run_nat(&pkt).unwrap();
            assert_eq!(r.verdict, TC_ACT_UNSPEC, "{what}");
            assert_eq!(r.data, pkt, "{what} untouched");
        }
        assert_eq!(lb.stat(lb_stat::SNAT), 0);
    });
}

#[test]
fn next_hop_cache_replaces_the_fib_lookup() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let p = packet::ipv4(
            CLIENT,
            VIP,
            packet::TCP,
            &packet::tcp(42_424, 80, packet::SYN),
        );
        let IpAddr::V4(be) = predicted(&lb, "web", &v4_key(42_424)) else {
            panic!()
        };
        let dmac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let smac = [0x02, 0x66, 0x77, 0x88, 0x99, 0xaa];
        // Interface 1 (lo) is what test runs report as ingress: XDP_TX.
        assert_eq!(
            lb.set_next_hop(be.into(), Some((dmac, smac, 1))).unwrap(),
            1
        );
        let r = lb.test_run(LbProgram::Balancer, &p).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        assert_eq!(&r.data[0..6], &dmac, "cached next-hop MAC");
        assert_eq!(&r.data[6..12], &smac, "cached source MAC");
        assert_eq!(&r.data[30..34], &be.octets(), "same backend");
        assert_eq!(lb.stat(lb_stat::NEXTHOP_CACHED), 1);
        // Another egress interface: redirected there.
        lb.set_next_hop(be.into(), Some((dmac, smac, 999))).unwrap();
        let r = lb.test_run(LbProgram::Balancer, &p).unwrap();
        assert_eq!(r.verdict, 4, "XDP_REDIRECT to the cached interface");
        assert_eq!(lb.stat(lb_stat::REDIRECT), 1);
        // Cleared: back to the FIB lookup (no route here: gateway MAC).
        lb.set_next_hop(be.into(), None).unwrap();
        let r = lb.test_run(LbProgram::Balancer, &p).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        assert_eq!(&r.data[0..6], &GW);
        assert_eq!(lb.stat(lb_stat::NEXTHOP_CACHED), 2);
        // Unknown backend address: nothing cached.
        assert_eq!(
            lb.set_next_hop(Ipv4Addr::new(192, 0, 2, 99).into(), Some((dmac, smac, 1)))
                .unwrap(),
            0
        );
    });
}

/// The early VIP check: traffic to an address no service uses passes before
/// parsing, malformed or not (only a VIP address's traffic is judged), and
/// the filter follows the services: a removed VIP's address passes early, an
/// added one is balanced at once.
#[test]
fn vip_address_filter_follows_the_services() {
    if skip() {
        return;
    }
    in_empty_netns(|| {
        let mut lb = balancer();
        let other = Ipv4Addr::new(198, 51, 100, 11);
        let mut bad_version = packet::ipv4(
            CLIENT,
            other,
            packet::TCP,
            &packet::tcp(999, 80, packet::SYN),
        );
        bad_version[14] = 0x55;
        let r = lb.test_run(LbProgram::Balancer, &bad_version).unwrap();
        assert_eq!(r.verdict, XDP_PASS, "malformed, not to a VIP address");
        assert_eq!(lb.stat(lb_stat::MALFORMED), 0);
        assert_eq!(lb.stat(lb_stat::PASS_NON_VIP), 1);
        let mut to_vip = bad_version.clone();
        to_vip[30..34].copy_from_slice(&VIP.octets());
        let r = lb.test_run(LbProgram::Balancer, &to_vip).unwrap();
        assert_eq!(r.verdict, XDP_DROP, "malformed, to a VIP address");
        assert_eq!(lb.stat(lb_stat::MALFORMED), 1);

        // Move the service to `other`: VIP's traffic passes, other's is
        // balanced.
        let b = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1));
        lb.apply(&[service("web", other.into(), 80, &[(b, 1)])])
            .unwrap();
        let syn = |dst: Ipv4Addr| {
            packet::ipv4(
                CLIENT,
                dst,
                packet::TCP,
                &packet::tcp(1000, 80, packet::SYN),
            )
        };
        let r = lb.test_run(LbProgram::Balancer, &syn(VIP)).unwrap();
        assert_eq!(r.verdict, XDP_PASS, "old VIP address");
        assert_eq!(lb.stat(lb_stat::PASS_NON_VIP), 2);
        let r = lb.test_run(LbProgram::Balancer, &syn(other)).unwrap();
        assert_ne!(r.verdict, XDP_PASS, "new VIP address is balanced");
        assert_eq!(lb.flow_count(), 1);
    });
}
