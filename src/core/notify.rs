//! `POST /v1/notify`: the app server's request, checked before any user object is called, and
//! the per-user results of the fan-out.

use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::user::inbox::{check_key, NewNotification};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most users in one call.
pub const MAX_USERS: usize = 1000;

/// Largest body: 1,000 user ids and a notification fit with room to spare.
pub const MAX_BODY: usize = 256 * 1024;

/// User objects called at once: bounds the Worker's open subrequests.
pub const CONCURRENCY: usize = 50;

/// A checked request: distinct users in the order given, and what each user's object gets.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRequest {
    /// Each user once.
    pub users: Vec<UserId>,
    /// The body of every `POST /notify` to a user's object.
    pub delivery: Delivery,
}

/// What the Worker sends each user's object: the notification and the call's idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// What to store in the inbox.
    pub notification: NewNotification,
    /// The `Idempotency-Key` of the call, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    users: Vec<String>,
    notification: NewNotification,
}

/// Parses and checks the body and the `Idempotency-Key`; every error is a 400 (or 413) that
/// says what is wrong.
pub fn parse(body: &str, key: Option<String>, max_body_chars: usize) -> Result<NotifyRequest, Error> {
    if let Some(key) = &key {
        check_key(key)?;
    }
    let bad = |m: String| Error::new(ErrorCode::BadRequest, m);
    let body: Body = serde_json::from_str(body).map_err(|e| {
        bad(format!(
            "body must be {{\"users\": [...], \"notification\": {{\"type\", \"title\"?, \"body\"?, \"data\"?}}}}: {e}"
        ))
    })?;
    if body.users.is_empty() || body.users.len() > MAX_USERS {
        return Err(bad(format!("users must list 1 to {MAX_USERS} user ids")));
    }
    let mut users: Vec<UserId> = Vec::with_capacity(body.users.len());
    for raw in &body.users {
        let user = UserId::parse(raw).map_err(|e| bad(format!("users: {raw:?} is not a user id: it {e}")))?;
        if !users.contains(&user) {
            users.push(user);
        }
    }
    body.notification.validate(max_body_chars)?;
    Ok(NotifyRequest { users, delivery: Delivery { notification: body.notification, key } })
}

/// One user's outcome: the object's acknowledgement, or the error that kept it from storing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserResult {
    /// The user.
    pub user: UserId,
    /// Whether the notification is stored (now or by an earlier call with the same key).
    pub ok: bool,
    /// The object's answer (`id`, `unread`, `duplicate`?) when `ok`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Value>,
    /// Why not, when not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

/// The 202 body from each user object's answer (its acknowledgement, or the error that kept it
/// from storing): counts and every user's result, in request order.
pub fn response(answers: Vec<(UserId, Result<Value, Error>)>) -> Value {
    let results: Vec<UserResult> = answers
        .into_iter()
        .map(|(user, answer)| match answer {
            Ok(ack) => UserResult { user, ok: true, ack: Some(ack), error: None },
            Err(error) => UserResult { user, ok: false, ack: None, error: Some(error) },
        })
        .collect();
    let failed = results.iter().filter(|r| !r.ok).count();
    serde_json::json!({
        "delivered": results.len() - failed,
        "failed": failed,
        "results": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_good_body_and_drops_repeated_users() {
        let r = parse(
            r#"{"users":["a","b","a"],"notification":{"type":"mention","title":"hi","data":{"x":1}}}"#,
            Some("k".into()),
            100,
        )
        .unwrap();
        assert_eq!(r.users.iter().map(UserId::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(r.delivery.notification.kind, "mention");
        assert_eq!(serde_json::to_value(&r.delivery).unwrap()["key"], "k");
    }

    #[test]
    fn refuses_bad_bodies_clearly() {
        let err = |body: &str| parse(body, None, 10).unwrap_err();
        assert!(err("nope").message.contains("body must be"));
        assert!(err(r#"{"users":[],"notification":{"type":"x"}}"#).message.contains("1 to 1000"));
        assert!(err(r#"{"users":["bad id"],"notification":{"type":"x"}}"#).message.contains("\"bad id\""));
        assert!(err(r#"{"users":["a"],"notification":{"type":""}}"#).message.contains("type"));
        assert!(err(r#"{"users":["a"],"notification":{"type":"x","body":"12345678901"}}"#)
            .message
            .contains("body"));
        assert!(err(r#"{"users":["a"],"notification":{"type":"x","colour":1}}"#).message.contains("colour"));
        let many: Vec<String> = (0..1001).map(|i| format!("\"u{i}\"")).collect();
        assert!(err(&format!(r#"{{"users":[{}],"notification":{{"type":"x"}}}}"#, many.join(",")))
            .message
            .contains("1000"));
        let huge = "x".repeat(20_000);
        let big =
            parse(&format!(r#"{{"users":["a"],"notification":{{"type":"x","data":"{huge}"}}}}"#), None, 10);
        assert_eq!(big.unwrap_err().code, ErrorCode::TooLarge);
        let key = parse(r#"{"users":["a"],"notification":{"type":"x"}}"#, Some("k".repeat(129)), 10);
        assert!(key.unwrap_err().message.contains("Idempotency-Key"));
    }

    #[test]
    fn results_report_every_user_in_order() {
        let user = |s: &str| UserId::parse(s).unwrap();
        let body = response(vec![
            (user("a"), Ok(serde_json::json!({ "id": 3, "unread": 1 }))),
            (user("b"), Err(Error::new(ErrorCode::Internal, "storage error"))),
        ]);
        assert_eq!(
            body,
            serde_json::json!({ "delivered": 1, "failed": 1, "results": [
                { "user": "a", "ok": true, "id": 3, "unread": 1 },
                { "user": "b", "ok": false, "error": { "code": "internal", "message": "storage error" } },
            ]})
        );
    }
}
