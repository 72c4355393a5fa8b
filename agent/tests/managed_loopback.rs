//! Managed mode end to end on loopback: the real agent client
//! (`rampart_agent::managed`) against a real in-process rampartd over mutual
//! TLS. The dataplane here validates and compiles every pushed policy with
//! the agent's own compiler (the part of the eBPF enforcer that decides
//! acceptance) and records it; the eBPF attach itself is covered by the
//! netns tests.

#[path = "../../controller/tests/fleet_common/mod.rs"]
mod fleet_common;
mod managed_common;

use std::{sync::atomic::Ordering, time::Duration};

use fleet_common::{eventually, start};
use managed_common::Agent;
use rampart_agent::managed::ManagedError;

// Input:  a web service; an agent enrolling with a token labelled role=web.
// Output: version 1 applied and acknowledged, hits aggregated per rule;
//         controller stopped: the agent keeps its policy and reports
//         fail-static; controller restarted on the same port: the agent
//         reconnects without re-applying; a change arrives as version 2.
#[tokio::test]
async fn enroll_apply_fail_static_and_resync() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = start(&data, None).await;
    d.apply_host_fw("web", "web", 22).await;
    let token = d.enroll_token(&[("role", "web")]).await;
    let a = Agent::spawn(
        &d,
        &dir.path().join("agent"),
        Some(token),
        "node-1",
        &["lo"],
    );
    eventually("agent applied v1", || async { a.version() == 1 }).await;
    eventually("controller sees v1 online", || async {
        let l = d.agents().await;
        l.len() == 1 && l[0].applied_version == 1 && l[0].state == "online"
    })
    .await;
    eventually("hits aggregated", || async {
        let c = d.counters("acme", "web").await;
        c.len() == 1 && c[0].sequence == 10 && c[0].packets == 5 && c[0].agents == 1
    })
    .await;
    assert_eq!(a.applies(), 1);

    let port = d.agents;
    d.stop().await;
    eventually("fail-static", || async {
        !a.status.connected.load(Ordering::SeqCst) && a.status.fail_static.load(Ordering::SeqCst)
    })
    .await;
    assert!(a.status.render().contains("rampart_agent_fail_static 1"));
    assert_eq!(a.version(), 1, "policy kept while disconnected");

    let d = start(&data, Some(port)).await;
    eventually("reconnected", || async {
        a.status.connected.load(Ordering::SeqCst) && a.status.sessions.load(Ordering::SeqCst) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.applies(),
        1,
        "unchanged policy re-applied after controller restart"
    );
    assert!(!a.status.fail_static.load(Ordering::SeqCst));

    d.apply_host_fw("web", "web", 2222).await;
    eventually("agent applied v2", || async { a.version() == 2 }).await;
    assert_eq!(a.applies(), 2);
    a.stop().await.unwrap();
    d.stop().await;
}

// Input:  an enrolled agent is stopped and started again without a token.
// Output: it reconnects with its stored identity (still one agent listed),
//         re-enforces its stored policy locally, gets no push.
#[tokio::test]
async fn agent_restart_keeps_identity_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir.path().join("data"), None).await;
    d.apply_host_fw("web", "web", 22).await;
    let state = dir.path().join("agent");
    let a = Agent::spawn(
        &d,
        &state,
        Some(d.enroll_token(&[("role", "web")]).await),
        "node-1",
        &["lo"],
    );
    eventually("v1", || async { a.version() == 1 }).await;
    a.stop().await.unwrap();

    let b = Agent::spawn(&d, &state, None, "node-1", &["lo"]);
    assert_eq!(b.version(), 0);
    eventually("restored and connected", || async {
        b.version() == 1 && b.status.connected.load(Ordering::SeqCst)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.applies(), 1, "only the local restore, no push");
    let l = d.agents().await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].applied_version, 1);
    b.stop().await.unwrap();
    d.stop().await;
}

// Input:  a connected agent is revoked; an agent without token or state.
// Output: the revoked agent's run ends with PermissionDenied while it keeps
//         its policy; the unenrolled one fails with NoToken.
#[tokio::test]
async fn revoked_agent_stops_and_unenrolled_needs_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir.path().join("data"), None).await;
    d.apply_host_fw("web", "web", 22).await;
    let a = Agent::spawn(
        &d,
        &dir.path().join("agent"),
        Some(d.enroll_token(&[("role", "web")]).await),
        "node-1",
        &["lo"],
    );
    eventually("v1", || async { a.version() == 1 }).await;
    let id = d.agents().await[0].agent_id.clone();
    d.revoke(&id).await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), a.task)
        .await
        .expect("revoked agent kept running")
        .unwrap();
    match res {
        Err(ManagedError::Refused(s)) => assert_eq!(s.code(), tonic::Code::PermissionDenied),
        other => panic!("unexpected end: {other:?}"),
    }
    assert_eq!(a.status.applied_version.load(Ordering::SeqCst), 1);

    let n = Agent::spawn(&d, &dir.path().join("fresh"), None, "node-1", &["lo"]);
    let res = tokio::time::timeout(Duration::from_secs(5), n.task)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(res, Err(ManagedError::NoToken { .. })), "{res:?}");
    d.stop().await;
}
