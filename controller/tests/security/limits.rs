//! Limits of the management API through the real gRPC stack: per-user rate
//! limits with a retry hint, request size, and the model's input limits
//! (overlong names, deep nesting, huge rule lists) answered with a clear
//! InvalidArgument.

use std::time::Duration;

use crate::secure::Daemon;
use rampart_proto::v1::{
    self as pb, access_manager_client::AccessManagerClient,
    service_manager_client::ServiceManagerClient,
};
use tonic::Code;

fn apply_req(doc: String) -> pb::ApplyServiceRequest {
    pb::ApplyServiceRequest {
        document: doc,
        format: 0,
        source_name: "big.yaml".into(),
        dry_run: true,
    }
}

fn firewall(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {{name: {name}, tenant: acme}}\n\
         spec:\n  defaultAction: deny\n  rules:\n{rules}  targets:\n    hosts:\n      - selector: {{role: web}}\n"
    )
}

// Input:  3 requests/s with a burst of 4 per user; 6 quick calls by alice,
//         then one by bob, then alice again after the hinted wait.
// Output: alice's 5th call gets ResourceExhausted with a retry hint (text
//         and `retry-after-ms`); bob is unaffected; alice recovers.
#[tokio::test]
async fn per_user_rate_limit_with_retry_hint() {
    let d = Daemon::start_with(|c| {
        c.limits.requests_per_second = 3.0;
        c.limits.burst = 4;
    })
    .await;
    // Issuing tokens spends the admin's own bucket, not alice's or bob's.
    let alice = d.token("alice", "viewer", &["*"], 600).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let bob = d.token("bob", "viewer", &["*"], 600).await;
    let mut a = AccessManagerClient::new(d.as_token(&alice).await);
    let mut refused = None;
    for i in 0..6 {
        match a.who_am_i(pb::WhoAmIRequest {}).await {
            Ok(_) => assert!(i < 4, "call {i} passed the burst"),
            Err(s) => {
                refused = Some((i, s));
                break;
            }
        }
    }
    let (i, s) = refused.expect("the rate limit never applied");
    assert_eq!(i, 4, "refused at call {i}");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("rate limit") && s.message().contains("retry in"),
        "{s:?}"
    );
    let hint: u64 = s
        .metadata()
        .get("retry-after-ms")
        .expect("retry-after-ms")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(hint > 0 && hint <= 400, "{hint}");
    AccessManagerClient::new(d.as_token(&bob).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("bob has his own bucket");
    tokio::time::sleep(Duration::from_millis(hint + 50)).await;
    a.who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("alice recovers after the hinted wait");
    d.stop().await;
}

// Input:  failed authentications from one address beyond the burst.
// Output: ResourceExhausted instead of Unauthenticated, while a valid token
//         from the same address still works.
#[tokio::test]
async fn failed_authentications_are_throttled_without_locking_out_others() {
    let d = Daemon::start_with(|c| {
        c.limits.auth_failures_per_second = 0.5;
        c.limits.auth_failure_burst = 3;
    })
    .await;
    let bad = d.as_token(&format!("rpt_{}", "B".repeat(43))).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let e = AccessManagerClient::new(bad.clone())
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap_err();
        codes.push(e.code());
    }
    assert_eq!(&codes[..3], &[Code::Unauthenticated; 3], "{codes:?}");
    assert_eq!(codes[4], Code::ResourceExhausted, "{codes:?}");
    AccessManagerClient::new(d.admin().await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("a valid token from the same address is not locked out");
    d.stop().await;
}

// Input:  an overlong name, nesting deeper than 32, 20,001 rules, and a
//         request above [api] max_request_bytes.
// Output: each refused with a message saying which limit.
#[tokio::test]
async fn oversized_inputs_are_refused_with_clear_errors() {
    let d = Daemon::start_with(|c| c.api.max_request_bytes = 2 << 20).await;
    let mut svc = ServiceManagerClient::new(d.admin().await);
    let rule = "    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}\n";

    let long = "n".repeat(300);
    let e = svc
        .dry_run(apply_req(firewall(&long, rule)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("name"), "{}", e.message());

    let deep = format!(
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {{name: x, tenant: acme}}\nspec: {}{}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    let e = svc.dry_run(apply_req(deep)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("deeper than 32"), "{}", e.message());

    let mut rules = String::new();
    for i in 0..20_001 {
        rules.push_str(&format!(
            "    - {{sequence: {}, action: permit, protocol: tcp}}\n",
            i + 1
        ));
    }
    let e = svc
        .dry_run(apply_req(firewall("many", &rules)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains("too many rules: 20001 (at most 20000)"),
        "{}",
        &e.message()[..e.message().len().min(500)]
    );

    let huge = "#".repeat(3 << 20);
    let e = svc.dry_run(apply_req(huge)).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(e.message().contains("too large"), "{}", e.message());
    d.stop().await;
}
