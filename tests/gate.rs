//! The Worker's checks of each route and the object request each leads to (`core::gate`), on
//! the host: what `edge/mod.rs` used to decide route by route.

mod support;

use serde_json::{json, Value};
use support::{config, hs256};
use switchboard::core::admission::Admission;
use switchboard::core::config::{Config, Limits};
use switchboard::core::error::{Error, ErrorCode};
use switchboard::core::gate::{plan, Asked, Forward, ObjectKind, Plan, CONNECT, MAX_WRITE_BODY};
use switchboard::core::ids::UserId;
use switchboard::core::route::route;
use switchboard::core::time::Timestamp;
use switchboard::core::user::policy_of;

const NOW_S: u64 = 1_700_000_000;
const NOW: Timestamp = Timestamp(NOW_S * 1000);
const EXPIRES: Timestamp = Timestamp((NOW_S + 60) * 1000);

/// A request's headers and query.
#[derive(Default)]
struct Req {
    headers: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
}

impl Asked for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }
    fn query(&self, name: &str) -> Option<String> {
        self.query.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }
}

impl Req {
    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn query(mut self, name: &'static str, value: &str) -> Req {
        self.query.push((name, value.to_owned()));
        self
    }
    fn bearer(self, token: &str) -> Req {
        self.header("authorization", &format!("Bearer {token}"))
    }
    fn upgrade(self) -> Req {
        self.header("upgrade", "websocket")
    }
}

fn token(user: &str, cap: Option<Value>) -> String {
    let mut claims = json!({ "sub": user, "exp": NOW_S + 60 });
    if let Some(cap) = cap {
        claims["cap"] = cap;
    }
    hs256(&claims)
}

fn settings() -> Config {
    config(Limits::default())
}

fn check(method: &str, path: &str, req: &Req) -> Result<Plan, Error> {
    let config = settings();
    plan(&route(method, path).unwrap(), req, || Ok(&config), NOW)
}

fn forward(method: &str, path: &str, req: &Req) -> Forward {
    match check(method, path, req) {
        Ok(Plan::Forward(to)) => to,
        other => panic!("{method} {path}: expected a forward, got {other:?}"),
    }
}

fn refused(method: &str, path: &str, req: &Req) -> (ErrorCode, String) {
    let e = check(method, path, req).expect_err("the request is refused");
    (e.code, e.message)
}

fn ann() -> UserId {
    UserId::parse("ann").unwrap()
}

#[test]
fn a_room_socket_is_checked_in_the_documented_order() {
    let path = "/v1/rooms/general/ws";
    let unusable = || -> Result<&Config, Error> { Err(Error::new(ErrorCode::Internal, "misconfigured")) };
    let not_upgrade = Req::default().bearer(&token("ann", None));
    // The upgrade and the subprotocols come before the settings are read.
    let e = plan(&route("GET", path).unwrap(), &not_upgrade, unusable, NOW).unwrap_err();
    assert_eq!(e.code, ErrorCode::UpgradeRequired);
    let only_bearer = Req::default().upgrade().header("sec-websocket-protocol", "bearer.x");
    assert_eq!(
        plan(&route("GET", path).unwrap(), &only_bearer, unusable, NOW).unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(refused("GET", path, &Req::default().upgrade()).0, ErrorCode::Unauthorized);
    let no_join = Req::default().upgrade().bearer(&token("ann", Some(json!({"room:other": ["join"]}))));
    assert_eq!(refused("GET", path, &no_join).0, ErrorCode::Forbidden);
    let bad_since = no_join.query("since", "x");
    assert_eq!(refused("GET", path, &bad_since).0, ErrorCode::Forbidden, "403 before the query");
    let bad_since = Req::default().upgrade().bearer(&token("ann", None)).query("since", "x");
    assert_eq!(refused("GET", path, &bad_since).0, ErrorCode::BadRequest);
}

#[test]
fn a_room_socket_carries_the_token_its_rights_and_its_resume_position() {
    let read_only = token("ann", Some(json!({"room:general": ["join"]})));
    let req = Req::default()
        .upgrade()
        .header("sec-websocket-protocol", &format!("switchboard.v1, bearer.{read_only}"))
        .query("since", "7")
        .query("epoch", "e1");
    let to = forward("GET", "/v1/rooms/general/ws", &req);
    assert_eq!((to.kind, to.id.as_str(), to.endpoint, to.body), (ObjectKind::Room, "general", CONNECT, None));
    assert!(to.is_socket());
    let expected = Admission {
        user: Some(ann()),
        expires: Some(EXPIRES),
        can_write: false,
        since: Some(7),
        epoch: Some("e1".into()),
        protocol: Some("switchboard.v1".into()),
        ..Admission::default()
    };
    assert_eq!(to.admission, expected);
    let plain = Req::default().upgrade().query("token", &token("ann", None));
    let to = forward("GET", "/v1/rooms/general/ws", &plain);
    assert!(to.admission.can_write, "the default caps include send");
    assert_eq!((to.admission.since, to.admission.protocol), (None, None));
}

#[test]
fn a_document_socket_resumes_from_a_version_and_its_epoch() {
    let path = "/v1/docs/spec/ws";
    let reader = Req::default().upgrade().bearer(&token("ann", Some(json!({"doc:spec": ["read"]}))));
    assert_eq!(
        refused("GET", path, &Req::default().upgrade().bearer(&token("ann", None))).0,
        ErrorCode::Forbidden
    );
    let to = forward("GET", path, &reader);
    assert_eq!((to.kind, to.endpoint, to.admission.can_write), (ObjectKind::Doc, CONNECT, false));
    let req = Req::default().upgrade().bearer(&token("ann", Some(json!({"doc:*": ["write"]}))));
    let to = forward("GET", path, &req.query("v", "3").query("epoch", "e9"));
    assert_eq!(
        (to.admission.since, to.admission.epoch.as_deref(), to.admission.can_write),
        (Some(3), Some("e9"), true)
    );
    // An epoch without a version resumes nothing; a bad one is refused either way.
    let reader = || Req::default().upgrade().bearer(&token("ann", Some(json!({"doc:spec": ["read"]}))));
    assert_eq!(forward("GET", path, &reader().query("epoch", "e9")).admission.epoch, None);
    let (code, message) = refused("GET", path, &reader().query("epoch", ""));
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::BadRequest, "epoch must be 1 to 64 printable ASCII characters")
    );
    // Nothing outside printable ASCII travels on in the header to the object.
    assert_eq!(refused("GET", path, &reader().query("v", "1").query("epoch", "é9")).0, ErrorCode::BadRequest);
    assert_eq!(
        refused("GET", path, &reader().query("v", "1").query("epoch", "a b")).0,
        ErrorCode::BadRequest
    );
    assert_eq!(refused("GET", path, &reader().query("v", "-1")).0, ErrorCode::BadRequest);
}

#[test]
fn the_user_socket_goes_to_the_callers_own_object_with_their_watch_policy() {
    let req = Req::default()
        .upgrade()
        .bearer(&hs256(&json!({ "sub": "ann", "exp": NOW_S + 60, "friends": ["bo"] })));
    let to = forward("GET", "/v1/users/me/ws", &req);
    assert_eq!((to.kind, to.id.as_str(), to.endpoint), (ObjectKind::User, "ann", CONNECT));
    assert_eq!(to.admission.expires, Some(EXPIRES));
    let policy = to.admission.policy.expect("a policy");
    assert!(policy.allows(&UserId::parse("bo").unwrap()));
    assert_eq!(to.admission.user, None, "the object knows its own id");
}

#[test]
fn stats_take_the_server_key() {
    for (path, kind, id) in [
        ("/v1/rooms/general/stats", ObjectKind::Room, "general"),
        ("/v1/users/bo/stats", ObjectKind::User, "bo"),
        ("/v1/docs/spec/stats", ObjectKind::Doc, "spec"),
    ] {
        let to = forward("GET", path, &Req::default().bearer("server-key"));
        assert_eq!(
            to,
            Forward { kind, id: id.into(), endpoint: "stats", admission: Admission::default(), body: None }
        );
        assert_eq!(refused("GET", path, &Req::default()).0, ErrorCode::Unauthorized);
        assert_eq!(
            refused("GET", path, &Req::default().bearer(&token("ann", None))).0,
            ErrorCode::Unauthorized
        );
    }
}

#[test]
fn a_history_page_is_checked_and_carried_in_the_admission() {
    let path = "/v1/rooms/general/messages";
    let req = || Req::default().query("token", &token("ann", None));
    let to = forward("GET", path, &req().query("before", "9").query("limit", "99999999999"));
    let expected =
        Admission { user: Some(ann()), before: Some(9), limit: Some(u32::MAX), ..Admission::default() };
    assert_eq!((to.endpoint, to.admission), ("history", expected));
    assert_eq!(refused("GET", path, &Req::default()).0, ErrorCode::Unauthorized);
    assert_eq!(
        refused("GET", path, &req().query("before", "x")).1,
        r#"before must be a whole number, got "x""#
    );
    let outsider = Req::default().bearer(&token("ann", Some(json!({"room:other": ["join"]}))));
    assert_eq!(refused("GET", path, &outsider.query("limit", "x")).0, ErrorCode::Forbidden);
}

#[test]
fn a_room_event_stream_resumes_from_last_event_id_before_the_query() {
    let path = "/v1/rooms/general/events";
    let req = Req::default().bearer(&token("ann", None)).query("since", "3").query("epoch", "q");
    let to = forward("GET", path, &req);
    assert_eq!(
        (to.endpoint, to.admission.since, to.admission.epoch.as_deref()),
        ("events", Some(3), Some("q"))
    );
    assert_eq!(to.admission.expires, Some(EXPIRES));
    let to = forward("GET", path, &req.header("last-event-id", "e7:12"));
    assert_eq!((to.admission.since, to.admission.epoch.as_deref()), (Some(12), Some("e7")));
}

#[test]
fn a_publish_takes_its_author_from_the_caller_and_the_body() {
    let path = "/v1/rooms/general/messages";
    let publishing = |req: &Req| match check("POST", path, req) {
        Ok(Plan::Publish(p)) => p,
        other => panic!("expected a publish, got {other:?}"),
    };
    let server = Req::default().bearer("server-key").header("idempotency-key", "k1");
    let p = publishing(&server);
    assert_eq!(p.max_body, Limits::default().max_frame_bytes);
    let to = p.clone().forward(r#"{"text": "hi", "user": "bot"}"#, &settings()).unwrap();
    assert_eq!((to.endpoint, to.body), ("publish", Some(Limits::default().max_frame_bytes)));
    let expected = Admission {
        user: Some(UserId::parse("bot").unwrap()),
        server: true,
        idempotency_key: Some("k1".into()),
        ..Admission::default()
    };
    assert_eq!(to.admission, expected);
    let to = p.clone().forward(r#"{"text": "hi"}"#, &settings()).unwrap();
    assert_eq!(to.admission.user.unwrap().as_str(), "system");
    assert!(p
        .forward("{}", &settings())
        .unwrap_err()
        .message
        .starts_with(r#"body must be {"text", "data"?, "user"?}"#));
    // A user publishes as themself, and needs send.
    let to = publishing(&Req::default().bearer(&token("ann", None)))
        .forward(r#"{"text": "hi", "user": "bot"}"#, &settings())
        .unwrap();
    assert_eq!((to.admission.user, to.admission.server), (Some(ann()), false));
    let reader = Req::default().bearer(&token("ann", Some(json!({"room:general": ["join"]}))));
    let e = publishing(&reader).forward(r#"{"text": "hi"}"#, &settings()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(refused("POST", path, &Req::default()).0, ErrorCode::Unauthorized);
}

#[test]
fn the_users_own_routes_go_to_their_object() {
    let req = || Req::default().bearer(&token("ann", None));
    let to = forward("GET", "/v1/users/me/notifications", &req().query("limit", "5"));
    let page = Admission { limit: Some(5), ..Admission::default() };
    assert_eq!(
        (to.kind, to.id.as_str(), to.endpoint, to.admission, to.body),
        (ObjectKind::User, "ann", "notifications", page, None)
    );
    let to = forward("POST", "/v1/users/me/notifications/read", &req());
    assert_eq!((to.endpoint, to.admission, to.body), ("read", Admission::default(), Some(MAX_WRITE_BODY)));
    let device = Admission {
        expires: Some(EXPIRES),
        policy: Some(policy_of(&auth_identity(), &settings())),
        ..Admission::default()
    };
    let to = forward("GET", "/v1/users/me/events", &req());
    assert_eq!((to.endpoint, &to.admission, to.body), ("events", &device, None));
    for (path, endpoint) in [
        ("/v1/users/me/status", "status"),
        ("/v1/users/me/active", "active"),
        ("/v1/users/me/subscribe", "subscribe"),
        ("/v1/users/me/unsubscribe", "unsubscribe"),
    ] {
        let to = forward("POST", path, &req());
        assert_eq!((to.endpoint, &to.admission, to.body), (endpoint, &device, Some(MAX_WRITE_BODY)));
        // The server key is no user token.
        assert_eq!(refused("POST", path, &Req::default().bearer("server-key")).0, ErrorCode::Unauthorized);
    }
}

fn auth_identity() -> switchboard::core::auth::Identity {
    switchboard::core::auth::verify(&token("ann", None), &settings().auth, NOW).unwrap()
}

#[test]
fn a_document_snapshot_is_for_readers_and_app_servers() {
    let path = "/v1/docs/spec";
    let to = forward("GET", path, &Req::default().bearer("server-key"));
    assert_eq!((to.kind, to.endpoint, to.admission), (ObjectKind::Doc, "snapshot", Admission::default()));
    forward("GET", path, &Req::default().bearer(&token("ann", Some(json!({"doc:spec": ["read"]})))));
    assert_eq!(refused("GET", path, &Req::default().bearer(&token("ann", None))).0, ErrorCode::Forbidden);
    assert_eq!(refused("GET", path, &Req::default()).0, ErrorCode::Unauthorized);
}

#[test]
fn notify_takes_the_server_key_and_health_reads_no_setting() {
    assert_eq!(check("POST", "/v1/notify", &Req::default().bearer("server-key")), Ok(Plan::Notify));
    assert_eq!(
        refused("POST", "/v1/notify", &Req::default().bearer(&token("ann", None))).0,
        ErrorCode::Unauthorized
    );
    let unusable = || -> Result<&Config, Error> { Err(Error::new(ErrorCode::Internal, "misconfigured")) };
    assert_eq!(plan(&route("GET", "/healthz").unwrap(), &Req::default(), unusable, NOW), Ok(Plan::Health));
    assert_eq!(
        plan(&route("POST", "/v1/dev/token").unwrap(), &Req::default(), unusable, NOW),
        Ok(Plan::DevToken)
    );
}
