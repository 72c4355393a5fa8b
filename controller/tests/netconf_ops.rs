//! The NETCONF client against a real netconfd (yuma123) with the Cisco
//! IOS-XE 16.9.3 models loaded: every operation, framing, authentication,
//! host keys, locks between two clients, confirmed commits, typed errors.

mod support;

use std::time::{Duration, Instant};

use rampart_controller::transport::{
    error::{ErrorTag, ErrorType},
    netconf::{
        Commit, Datastore, DefaultOperation, EditConfig, ErrorOption, Filter, HostKeyPolicy,
        NetconfError, Session, TestOption, framing::Framing,
    },
};
use support::netconfd::Netconfd;

const NATIVE_NS: &str = "http://cisco.com/ns/yang/Cisco-IOS-XE-native";
const ACL_NS: &str = "http://cisco.com/ns/yang/Cisco-IOS-XE-acl";

/// A `<config>` with one extended ACL `name` holding `aces` (sequence, port).
fn acl_config(name: &str, aces: &[(u32, u16)], op: Option<&str>) -> String {
    let op = op
        .map(|o| {
            format!(" xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\" nc:operation=\"{o}\"")
        })
        .unwrap_or_default();
    let rules: String = aces
        .iter()
        .map(|(seq, port)| {
            format!(
                "<access-list-seq-rule><sequence>{seq}</sequence><ace-rule><action>permit</action><protocol>tcp</protocol><any/><dst-any/><dst-eq>{port}</dst-eq></ace-rule></access-list-seq-rule>"
            )
        })
        .collect();
    format!(
        "<config xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><native xmlns=\"{NATIVE_NS}\"><ip><access-list><extended xmlns=\"{ACL_NS}\"{op}><name>{name}</name>{rules}</extended></access-list></ip></native></config>"
    )
}

fn acl_filter(name: &str) -> Filter {
    Filter::Subtree(format!(
        "<native xmlns=\"{NATIVE_NS}\"><ip><access-list><extended xmlns=\"{ACL_NS}\"><name>{name}</name></extended></access-list></ip></native>"
    ))
}

fn connect(nc: &Netconfd) -> Session {
    Session::connect(&nc.session_config()).unwrap_or_else(|e| panic!("connect: {e}\n{}", nc.log()))
}

fn edit_commit(s: &mut Session, config: String) {
    s.edit_config(EditConfig::new(Datastore::Candidate, config))
        .unwrap();
    s.commit(Commit::default()).unwrap();
}

fn running_acl(s: &mut Session, name: &str) -> String {
    s.get_config(Datastore::Running, Some(acl_filter(name)))
        .unwrap()
}

#[test]
fn hello_auth_and_host_keys() {
    let Some(nc) = Netconfd::start() else { return };
    // Key auth, base:1.1 chunked framing chosen from the capabilities.
    let s = connect(&nc);
    assert!(
        s.capabilities().base11()
            && s.capabilities().candidate()
            && s.capabilities().confirmed_commit()
    );
    assert_eq!(s.framing(), Framing::Chunked);
    assert!(
        s.capabilities().modules().any(|m| m == "Cisco-IOS-XE-acl"),
        "Cisco models advertised"
    );
    s.close().unwrap();

    // Password auth.
    let s = Session::connect(&nc.password_config()).unwrap();
    s.close().unwrap();

    // Wrong password: a typed auth error, not a hang.
    let mut bad = nc.password_config();
    bad.auth = rampart_controller::transport::netconf::Auth::Password("nope".to_owned());
    assert!(matches!(
        Session::connect(&bad),
        Err(NetconfError::Auth { .. })
    ));

    // Unknown host key refused without TOFU; accepted and recorded with it.
    let empty = nc.dir.path().join("empty_known_hosts");
    let mut cfg = nc.session_config();
    cfg.host_key = HostKeyPolicy {
        known_hosts: empty.clone(),
        trust_on_first_use: false,
    };
    assert!(matches!(
        Session::connect(&cfg),
        Err(NetconfError::UnknownHostKey { .. })
    ));
    cfg.host_key.trust_on_first_use = true;
    Session::connect(&cfg).unwrap().close().unwrap();
    let recorded = std::fs::read_to_string(&empty).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", nc.port)),
        "{recorded}"
    );
    cfg.host_key.trust_on_first_use = false;
    Session::connect(&cfg).unwrap().close().unwrap();

    // A different recorded key is a mismatch, even with TOFU on.
    let forged = nc.dir.path().join("forged_known_hosts");
    let other = std::fs::read_to_string(nc.dir.path().join("client_key.pub")).unwrap();
    let mut parts = other.split_whitespace();
    std::fs::write(
        &forged,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            nc.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    cfg.host_key = HostKeyPolicy {
        known_hosts: forged,
        trust_on_first_use: true,
    };
    assert!(matches!(
        Session::connect(&cfg),
        Err(NetconfError::HostKeyMismatch { .. })
    ));

    // Nothing listening: a connect error naming the address.
    let mut gone = nc.session_config();
    gone.port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Session::connect(&gone).unwrap_err();
    assert!(matches!(err, NetconfError::Connect { .. }), "{err}");
}

#[test]
fn edit_get_and_datastore_operations() {
    let Some(nc) = Netconfd::start() else { return };
    let mut s = connect(&nc);

    // merge, commit, read back with subtree and xpath filters.
    edit_commit(&mut s, acl_config("OPS-A", &[(10, 80), (20, 443)], None));
    let got = running_acl(&mut s, "OPS-A");
    assert!(
        got.contains("<sequence>10</sequence>") && got.contains("<dst-eq>443</dst-eq>"),
        "{got}"
    );
    let xp = s
        .get_config(
            Datastore::Running,
            Some(Filter::XPath {
                select: "/ios:native/ios:ip/ios:access-list/ios-acl:extended[ios-acl:name='OPS-A']"
                    .to_owned(),
                namespaces: vec![
                    ("ios".to_owned(), NATIVE_NS.to_owned()),
                    ("ios-acl".to_owned(), ACL_NS.to_owned()),
                ],
            }),
        )
        .unwrap();
    assert!(
        xp.contains("OPS-A") && xp.contains("<dst-eq>80</dst-eq>"),
        "{xp}"
    );
    let all = s.get(Some(acl_filter("OPS-A"))).unwrap();
    assert!(all.contains("OPS-A"), "{all}");

    // replace on the ACL: entry 20 disappears.
    edit_commit(&mut s, acl_config("OPS-A", &[(10, 8080)], Some("replace")));
    let got = running_acl(&mut s, "OPS-A");
    assert!(
        got.contains("8080") && !got.contains("<sequence>20</sequence>"),
        "{got}"
    );

    // remove of a missing node is fine; delete of a missing node is data-missing.
    edit_commit(&mut s, acl_config("OPS-MISSING", &[], Some("remove")));
    s.edit_config(EditConfig::new(
        Datastore::Candidate,
        acl_config("OPS-MISSING", &[], Some("delete")),
    ))
    .map_or_else(
        |e| assert_eq!(e.rpc_errors()[0].tag, ErrorTag::DataMissing, "{e}"),
        |()| panic!("delete of a missing ACL succeeded"),
    );
    s.discard_changes().unwrap();
    edit_commit(&mut s, acl_config("OPS-A", &[], Some("delete")));
    assert!(!running_acl(&mut s, "OPS-A").contains("OPS-A"));

    // default-operation none: nothing without an explicit operation changes.
    let mut e = EditConfig::new(Datastore::Candidate, acl_config("OPS-B", &[(5, 22)], None));
    e.default_operation = Some(DefaultOperation::None);
    e.test_option = Some(TestOption::TestThenSet);
    // yuma123 answers default-operation none on absent data with data-missing.
    let _ = s.edit_config(e);
    s.discard_changes().unwrap();
    let mut e = EditConfig::new(Datastore::Candidate, acl_config("OPS-B", &[(5, 22)], None));
    e.default_operation = Some(DefaultOperation::Merge);
    e.test_option = Some(TestOption::TestThenSet);
    e.error_option = Some(ErrorOption::RollbackOnError);
    s.edit_config(e).unwrap();

    // discard-changes drops the uncommitted edit.
    s.discard_changes().unwrap();
    s.commit(Commit::default()).unwrap();
    assert!(!running_acl(&mut s, "OPS-B").contains("OPS-B"));

    // validate of the candidate.
    s.edit_config(EditConfig::new(
        Datastore::Candidate,
        acl_config("OPS-C", &[(1, 1)], None),
    ))
    .unwrap();
    s.validate(Datastore::Candidate).unwrap();
    s.discard_changes().unwrap();
    s.close().unwrap();
}

#[test]
fn invalid_edit_is_rejected_with_its_path_and_rolled_back() {
    let Some(nc) = Netconfd::start() else { return };
    let mut s = connect(&nc);
    // One good ACL and one out-of-range port in the same edit.
    let bad = acl_config("BAD-1", &[(10, 80)], None).replace(
        "</extended>",
        "</extended><extended><name>BAD-2</name><access-list-seq-rule><sequence>10</sequence><ace-rule><action>permit</action><protocol>tcp</protocol><any/><dst-any/><dst-eq>70000</dst-eq></ace-rule></access-list-seq-rule></extended>",
    );
    let bad = bad.replacen(
        "<extended><name>BAD-2",
        &format!("<extended xmlns=\"{ACL_NS}\"><name>BAD-2"),
        1,
    );
    let mut e = EditConfig::new(Datastore::Candidate, bad);
    e.error_option = Some(ErrorOption::RollbackOnError);
    let err = s.edit_config(e).unwrap_err();
    let errors = err.rpc_errors();
    assert!(!errors.is_empty(), "expected rpc-error, got {err}");
    let first = &errors[0];
    // yuma123 reports a value matching no member of the port union as
    // protocol/unknown-element ("wrong node type").
    assert!(
        matches!(
            first.error_type,
            ErrorType::Protocol | ErrorType::Application
        ),
        "{first}"
    );
    assert!(
        matches!(first.tag, ErrorTag::InvalidValue | ErrorTag::UnknownElement),
        "{first}"
    );
    let path = first.path.as_deref().unwrap_or_default();
    assert!(
        path.contains("dst-eq") && path.contains("BAD-2"),
        "error-path names the bad leaf: {path}"
    );
    // rollback-on-error: the good ACL of the same edit is not in the candidate.
    let cand = s
        .get_config(Datastore::Candidate, Some(acl_filter("BAD-1")))
        .unwrap();
    assert!(!cand.contains("BAD-1"), "half-applied: {cand}");
    // The session is still usable after an rpc-error.
    s.get_config(Datastore::Running, Some(acl_filter("X")))
        .unwrap();
    s.close().unwrap();
}

#[test]
fn lock_contention_and_kill_session() {
    let Some(nc) = Netconfd::start() else { return };
    let mut a = connect(&nc);
    let mut b = connect(&nc);
    a.lock(Datastore::Candidate).unwrap();
    let err = b.lock(Datastore::Candidate).unwrap_err();
    let e = &err.rpc_errors()[0];
    assert_eq!(e.tag, ErrorTag::LockDenied, "{err}");
    assert_eq!(
        e.info("session-id"),
        Some(a.session_id().to_string().as_str()),
        "holder named: {e}"
    );
    // The holder can still work; the other cannot edit the locked candidate.
    let err = b
        .edit_config(EditConfig::new(
            Datastore::Candidate,
            acl_config("LOCKED", &[(1, 1)], None),
        ))
        .unwrap_err();
    assert!(
        matches!(
            err.rpc_errors()[0].tag,
            ErrorTag::InUse | ErrorTag::LockDenied
        ),
        "{err}"
    );
    a.unlock(Datastore::Candidate).unwrap();
    b.lock(Datastore::Candidate).unwrap();
    b.unlock(Datastore::Candidate).unwrap();

    // kill-session releases the victim's lock.
    a.lock(Datastore::Candidate).unwrap();
    b.kill_session(a.session_id()).unwrap();
    b.lock(Datastore::Candidate).unwrap();
    b.unlock(Datastore::Candidate).unwrap();
    // The killed session reports a closed session, not a hang.
    let err = a.get_config(Datastore::Running, None).unwrap_err();
    assert!(err.is_fatal(), "{err}");
    b.close().unwrap();
}

#[test]
fn confirmed_commit_confirm_cancel_and_timeout() {
    let Some(nc) = Netconfd::start() else { return };
    let mut s = connect(&nc);

    // Confirmed commit with persist, confirmed from another session.
    s.edit_config(EditConfig::new(
        Datastore::Candidate,
        acl_config("CC-1", &[(1, 1)], None),
    ))
    .unwrap();
    s.commit(Commit {
        confirmed: true,
        confirm_timeout: Some(60),
        persist: Some("p-1".to_owned()),
        persist_id: None,
    })
    .unwrap();
    let mut other = connect(&nc);
    other
        .commit(Commit {
            persist_id: Some("p-1".to_owned()),
            ..Commit::default()
        })
        .unwrap();
    assert!(running_acl(&mut other, "CC-1").contains("CC-1"));

    // cancel-commit restores the previous running config.
    s.edit_config(EditConfig::new(
        Datastore::Candidate,
        acl_config("CC-2", &[(1, 1)], None),
    ))
    .unwrap();
    s.commit(Commit {
        confirmed: true,
        confirm_timeout: Some(60),
        persist: Some("p-2".to_owned()),
        persist_id: None,
    })
    .unwrap();
    assert!(running_acl(&mut other, "CC-2").contains("CC-2"));
    other.cancel_commit(Some("p-2".to_owned())).unwrap();
    assert!(!running_acl(&mut other, "CC-2").contains("CC-2"));
    assert!(
        running_acl(&mut other, "CC-1").contains("CC-1"),
        "earlier confirmed change survives"
    );

    // Timeout: not confirmed within 1 s, the server rolls back by itself
    // (yuma123 checks its timers only after ~1 s without any traffic, so
    // poll slowly).
    s.edit_config(EditConfig::new(
        Datastore::Candidate,
        acl_config("CC-3", &[(1, 1)], None),
    ))
    .unwrap();
    s.commit(Commit {
        confirmed: true,
        confirm_timeout: Some(1),
        persist: None,
        persist_id: None,
    })
    .unwrap();
    assert!(running_acl(&mut other, "CC-3").contains("CC-3"));
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        if !running_acl(&mut other, "CC-3").contains("CC-3") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "confirmed commit never rolled back"
        );
    }
    assert!(running_acl(&mut other, "CC-1").contains("CC-1"));
    other.close().unwrap();
}

/// Opens the `netconf` subsystem with raw ssh2 and waits until the server's
/// hello has reached our socket, before anything of ours is sent.
fn subsystem_with_hello_pending(nc: &Netconfd) -> (ssh2::Session, ssh2::Channel) {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", nc.port)).unwrap();
    let probe = tcp.try_clone().unwrap();
    let mut ssh = ssh2::Session::new().unwrap();
    ssh.set_tcp_stream(tcp);
    ssh.handshake().unwrap();
    ssh.userauth_pubkey_file(support::netconfd::USER, None, &nc.client_key(), None)
        .unwrap();
    let mut channel = ssh.channel_session().unwrap();
    channel.subsystem("netconf").unwrap();
    // The next bytes on the wire are the server's hello (netconfd sends it
    // at once); peek until the first arrive, then give the relay time to
    // pass on the rest of its 2,000-byte blocks.
    // (libssh2 keeps the shared socket non-blocking.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.peek(&mut [0u8; 1]).is_err() {
        assert!(Instant::now() < deadline, "no server hello within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    (ssh, channel)
}

/// Reads one 1.0-framed message, or what arrived before `timeout_ms` ended.
fn read_message(ssh: &ssh2::Session, r: &mut impl std::io::Read, timeout_ms: u32) -> String {
    ssh.set_timeout(timeout_ms);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"]]>]]>") {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Regression: `ssh2::Channel::flush` is libssh2's *read-buffer* flush. A
/// write first pulls the server's already-sent hello into that buffer, so a
/// write + flush deleted it. The raw channel still shows the loss (so this
/// test can tell); `SshChannel`, which every Rampart SSH transport uses,
/// must read the whole hello.
#[test]
fn hello_that_arrives_before_ours_is_read_whole() {
    use std::io::Write as _;

    use rampart_controller::transport::{
        netconf::{ops::CLIENT_HELLO, reply::parse_hello},
        ssh_channel::SshChannel,
    };
    let Some(nc) = Netconfd::start_with(false) else {
        return;
    };
    let ours = format!("{CLIENT_HELLO}]]>]]>");

    let (ssh, mut raw) = subsystem_with_hello_pending(&nc);
    raw.write_all(ours.as_bytes()).unwrap();
    raw.flush().unwrap();
    let left = read_message(&ssh, &mut raw, 2_000);
    assert!(
        parse_hello(left.trim_end_matches("]]>]]>").as_bytes()).is_err(),
        "raw ssh2 flush kept the pending hello: the test no longer reproduces the loss"
    );

    let (ssh, raw) = subsystem_with_hello_pending(&nc);
    let mut channel = SshChannel::new(raw);
    channel.write_all(ours.as_bytes()).unwrap();
    channel.flush().unwrap();
    let hello = read_message(&ssh, &mut channel, 10_000);
    let parsed = parse_hello(hello.trim_end_matches("]]>]]>").as_bytes())
        .unwrap_or_else(|e| panic!("hello lost or cut: {e}: {hello:?}"));
    assert!(parsed.session_id > 0, "{hello}");
}
