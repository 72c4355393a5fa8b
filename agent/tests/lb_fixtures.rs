//! BPF_PROG_TEST_RUN fixtures for the load balancer: the real programs and
//! maps (written by `Balancer::apply`) on hand-made packets; outputs are
//! checked byte by byte (outer headers, lengths, checksums, the inner packet
//! untouched). Run in a private network namespace so the FIB lookup has no
//! route and the configured gateway MAC is used (deterministic output).

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
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code, reason = "getuid")]
    let uid = unsafe { libc::getuid() };
    if uid != 0 {
        eprintln!("SKIP: lb fixtures need root (bpf, network namespace)");
        return true;
    }
    false
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
