//! SSO JWTs verified against a JWKS served by a tiny local HTTP server:
//! claims mapping, issuer/audience/expiry checks, algorithm confusion, and
//! caching of the key set.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use crate::secure::Daemon;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rampart_proto::v1::{self as pb, access_manager_client::AccessManagerClient};
use serde_json::json;
use tonic::Code;

const ISSUER: &str = "https://sso.test";
const AUDIENCE: &str = "rampart";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// Input:  an ES256 key published as JWKS on a local HTTP server; rampartd
//         configured with its issuer, audience and URL.
// Output: a valid token maps sub/rampart_role/rampart_tenants; wrong
//         audience, wrong issuer, expiry, HS256, an unknown kid and a missing
//         role are refused; the key set is fetched once and cached.
#[tokio::test]
async fn jwt_bearer_tokens_against_a_jwks() {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
    }]});
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = {
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = jwks.to_string();
                async move { ([("content-type", "application/json")], body) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let d = Daemon::start_with(|c| {
        c.auth.jwt_issuer = Some(ISSUER.into());
        c.auth.jwt_audience = Some(AUDIENCE.into());
        c.auth.jwks_url = Some(jwks_url);
    })
    .await;
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let sign = |claims: serde_json::Value, kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        encode(&h, &claims, &signing).unwrap()
    };
    let claims = |aud: &str, iss: &str, exp: i64| {
        json!({
            "sub": "sso-alice", "iss": iss, "aud": aud, "exp": exp,
            "rampart_role": "operator", "rampart_tenants": ["acme"],
        })
    };
    let who = |token: String| {
        let d = &d;
        async move {
            AccessManagerClient::new(d.as_token(&token).await)
                .who_am_i(pb::WhoAmIRequest {})
                .await
        }
    };

    let good = sign(claims(AUDIENCE, ISSUER, now() + 300), "k1");
    let me = who(good.clone()).await.unwrap().into_inner();
    assert_eq!(
        (me.user.as_str(), me.role.as_str(), me.auth_method.as_str()),
        ("sso-alice", "operator", "jwt")
    );
    assert_eq!(me.tenants, ["acme"]);
    who(good).await.unwrap();

    let refused = [
        (
            sign(claims("other-app", ISSUER, now() + 300), "k1"),
            "audience",
        ),
        (
            sign(claims(AUDIENCE, "https://evil", now() + 300), "k1"),
            "issuer",
        ),
        (sign(claims(AUDIENCE, ISSUER, now() - 600), "k1"), "expired"),
        (sign(claims(AUDIENCE, ISSUER, now() + 300), "k9"), "no key"),
    ];
    for (token, why) in refused {
        let e = who(token).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{why}: {e:?}");
        assert!(
            e.message().to_lowercase().contains(&why.to_lowercase())
                || e.message().contains("Invalid")
                || e.message().contains("Expired"),
            "{why}: {}",
            e.message()
        );
    }
    // Algorithm confusion: HS256 "signed" with a public value.
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(AUDIENCE, ISSUER, now() + 300),
        &EncodingKey::from_secret(raw),
    )
    .unwrap();
    let e = who(hs).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("not accepted"), "{e:?}");
    // A valid signature without a role claim: authenticated, no role.
    let no_role = sign(
        json!({"sub": "bob", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300}),
        "k1",
    );
    let e = who(no_role).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("rampart_role"), "{e:?}");

    // One fetch for the good tokens; the unknown kid forced at most one more.
    let n = fetches.load(Ordering::SeqCst);
    assert!((1..=2).contains(&n), "JWKS fetched {n} times");
    d.stop().await;
    server.abort();
}
