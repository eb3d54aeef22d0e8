//! JWT verification at a fixed clock, and where upgrade requests may carry their token.

mod support;

use serde_json::json;
use support::{hs256, sign, SECRET};
use switchboard::core::auth::{
    authenticate, check_server_key, upgrade_credentials, verify, AuthConfig, Identity,
};
use switchboard::core::error::ErrorCode;
use switchboard::core::ids::UserId;
use switchboard::core::time::Timestamp;

const NOW_S: i64 = 1_700_000_000;
const NOW: Timestamp = Timestamp(NOW_S as u64 * 1000);

fn config() -> AuthConfig {
    AuthConfig { hs256_secret: SECRET.to_vec(), audience: None, issuer: None, leeway_secs: 0 }
}

fn rejected(token: &str, config: &AuthConfig) -> String {
    let err = verify(token, config, NOW).expect_err("token should be rejected");
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(token.len() < 8 || !err.message.contains(token), "error echoes the token");
    err.message
}

#[test]
fn a_valid_token_names_its_user_and_expiry() {
    let token = hs256(&json!({ "sub": "alice", "exp": NOW_S + 60 }));
    let id = verify(&token, &config(), NOW).unwrap();
    assert_eq!(
        id,
        Identity {
            user: UserId::parse("alice").unwrap(),
            expires: Timestamp((NOW_S as u64 + 60) * 1000),
            caps: None,
            friends: None
        }
    );
}

#[test]
fn the_cap_claim_is_read_and_a_malformed_one_rejected() {
    let token = hs256(&json!({ "sub": "a", "exp": NOW_S + 60, "cap": {"room:general": ["join"]} }));
    let caps = verify(&token, &config(), NOW).unwrap().caps.unwrap();
    assert!(caps.allows("room:general", "join"));
    assert!(!caps.allows("room:general", "send"));
    let bad = hs256(&json!({ "sub": "a", "exp": NOW_S + 60, "cap": ["room:general"] }));
    assert!(rejected(&bad, &config()).contains("claims"));
}

#[test]
fn every_bad_token_is_rejected_with_a_reason() {
    let c = config();
    assert!(rejected("", &c).contains("malformed"));
    assert!(rejected("a.b", &c).contains("malformed"));
    assert!(rejected("not.a.jwt", &c).contains("malformed"));
    let claims = json!({ "sub": "alice", "exp": NOW_S + 60 });
    assert!(rejected(&sign(&json!({"alg": "HS256"}), &claims, b"other"), &c).contains("signature"));
    assert!(rejected(&sign(&json!({"alg": "none"}), &claims, SECRET), &c).contains("algorithm"));
    assert!(rejected(&sign(&json!({"alg": "RS256"}), &claims, SECRET), &c).contains("algorithm"));
    assert!(rejected(&sign(&json!({"alg": "HS512"}), &claims, SECRET), &c).contains("algorithm"));
    // A token cut after its payload, as `alg: none` tokens are written.
    let unsigned = hs256(&claims).rsplit_once('.').unwrap().0.to_owned() + ".";
    assert!(rejected(&unsigned, &c).contains("signature"));
    assert!(rejected(&hs256(&json!({ "sub": "alice", "exp": NOW_S - 1 })), &c).contains("expired"));
    assert!(rejected(&hs256(&json!({ "sub": "alice" })), &c).contains("exp"));
    assert!(rejected(&hs256(&json!({ "sub": "alice", "exp": "soon" })), &c).contains("claims"));
    assert!(rejected(&hs256(&json!({ "sub": "alice", "exp": NOW_S + 60, "nbf": NOW_S + 30 })), &c)
        .contains("nbf"));
    assert!(rejected(&hs256(&json!({ "exp": NOW_S + 60 })), &c).contains("sub"));
    assert!(rejected(&hs256(&json!({ "sub": "a b", "exp": NOW_S + 60 })), &c).contains("sub"));
    assert!(rejected(&hs256(&json!({ "sub": 42, "exp": NOW_S + 60 })), &c).contains("claims"));
}

#[test]
fn nbf_in_the_past_and_leeway_are_honoured() {
    let c = config();
    assert!(verify(&hs256(&json!({ "sub": "a", "exp": NOW_S + 60, "nbf": NOW_S - 1 })), &c, NOW).is_ok());
    let lenient = AuthConfig { leeway_secs: 30, ..config() };
    assert!(verify(&hs256(&json!({ "sub": "a", "exp": NOW_S - 10 })), &lenient, NOW).is_ok());
    assert!(verify(&hs256(&json!({ "sub": "a", "exp": NOW_S - 40 })), &lenient, NOW).is_err());
}

#[test]
fn audience_and_issuer_are_checked_only_when_configured() {
    let strict = AuthConfig { audience: Some("app".into()), issuer: Some("https://auth".into()), ..config() };
    let base = json!({ "sub": "a", "exp": NOW_S + 60, "aud": "app", "iss": "https://auth" });
    assert!(verify(&hs256(&base), &strict, NOW).is_ok());
    assert!(verify(&hs256(&base), &config(), NOW).is_ok());
    let mut list = base.clone();
    list["aud"] = json!(["x", "app"]);
    assert!(verify(&hs256(&list), &strict, NOW).is_ok());
    for (field, value) in [("aud", json!("other")), ("aud", json!(null)), ("iss", json!("https://evil"))] {
        let mut claims = base.clone();
        claims[field] = value;
        assert!(rejected(&hs256(&claims), &strict).contains(if field == "aud" {
            "audience"
        } else {
            "issuer"
        }));
    }
}

#[test]
fn token_sources_in_order_of_preference() {
    let c = upgrade_credentials(Some("Bearer h"), Some("switchboard.v1, bearer.p"), Some("q")).unwrap();
    assert_eq!((c.token.as_deref(), c.protocol), (Some("h"), Some("switchboard.v1")));
    let c = upgrade_credentials(None, Some("bearer.p,switchboard.v1"), Some("q")).unwrap();
    assert_eq!(c.token.as_deref(), Some("p"));
    let c = upgrade_credentials(None, None, Some("q")).unwrap();
    assert_eq!((c.token.as_deref(), c.protocol), (Some("q"), None));
    let c = upgrade_credentials(None, Some("switchboard.v1"), None).unwrap();
    assert_eq!((c.token, c.protocol), (None, Some("switchboard.v1")));
}

#[test]
fn bad_credential_shapes() {
    let only_bearer = upgrade_credentials(None, Some("bearer.abc"), None).unwrap_err();
    assert_eq!(only_bearer.code, ErrorCode::BadRequest);
    assert!(!only_bearer.message.contains("abc"));
    assert_eq!(upgrade_credentials(Some("Basic xyz"), None, None).unwrap_err().code, ErrorCode::Unauthorized);
    let none = upgrade_credentials(None, None, Some("")).unwrap();
    assert_eq!(authenticate(&none, &config(), NOW).unwrap_err().message, "missing token");
}

#[test]
fn server_key() {
    assert!(check_server_key(Some("Bearer k3y"), Some("k3y")).is_ok());
    assert!(check_server_key(Some("bearer  k3y "), Some("k3y")).is_ok());
    for presented in [None, Some("Bearer k3"), Some("Bearer k3yy"), Some("k3y"), Some("Basic k3y")] {
        assert_eq!(check_server_key(presented, Some("k3y")).unwrap_err().code, ErrorCode::Unauthorized);
    }
    assert!(check_server_key(Some("Bearer k3y"), None).is_err());
}
