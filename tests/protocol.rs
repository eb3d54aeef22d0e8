//! Frame decoding, good and bad, and the shapes of what the server sends.

use serde_json::{json, Value};
use switchboard::core::error::{Error, ErrorCode};
use switchboard::core::protocol::{decode, error_frame, event, failure, reply_ok, Incoming};

const MAX: usize = 1024;

fn ok(text: &str) -> (String, Option<Value>, Value) {
    let e = decode(Incoming::Text(text), MAX).expect("frame should decode");
    // The payload stays JSON text until its event's request reads it.
    let data = e.data.map_or(Value::Null, |d| serde_json::from_str(d.get()).expect("d is JSON"));
    (e.event, e.reply_to, data)
}

fn bad(text: &str) -> (Option<Value>, ErrorCode) {
    let e = decode(Incoming::Text(text), MAX).expect_err("frame should be rejected");
    (e.reply_to, e.error.code)
}

#[test]
fn decodes_envelopes() {
    assert_eq!(
        ok(r#"{"t":"message:send","ref":"c-1","d":{"text":"hi"}}"#),
        ("message:send".into(), Some(json!("c-1")), json!({"text":"hi"}))
    );
    assert_eq!(ok(r#"{"t":"history:get","ref":17}"#), ("history:get".into(), Some(json!(17)), Value::Null));
    assert_eq!(ok(r#"{"t":"x","ref":null,"extra":1}"#), ("x".into(), None, Value::Null));
    assert_eq!(ok(&format!(r#"{{"t":"x","ref":"{}"}}"#, "r".repeat(64))).1, Some(json!("r".repeat(64))));
}

#[test]
fn rejects_what_is_not_an_envelope() {
    assert_eq!(bad("not json"), (None, ErrorCode::BadFrame));
    assert_eq!(bad(""), (None, ErrorCode::BadFrame));
    assert_eq!(bad("[]"), (None, ErrorCode::BadFrame));
    assert_eq!(bad("\"t\""), (None, ErrorCode::BadFrame));
    assert_eq!(bad(r#"{"t":5}"#), (None, ErrorCode::BadFrame));
    assert_eq!(bad(r#"{"ref":"a"}"#), (Some(json!("a")), ErrorCode::BadFrame), "a readable ref gets a reply");
    assert_eq!(bad(r#"{"t":"x","ref":1.5}"#), (None, ErrorCode::BadFrame));
    assert_eq!(bad(r#"{"t":"x","t":"y"}"#), (None, ErrorCode::BadFrame), "a field given twice");
    assert_eq!(bad(r#"  ["t","x"]"#), (None, ErrorCode::BadFrame), "an array is not an envelope");
    assert_eq!(bad(r#"{"t":"x","ref":[1]}"#), (None, ErrorCode::BadFrame));
    assert_eq!(bad(&format!(r#"{{"t":"x","ref":"{}"}}"#, "r".repeat(65))), (None, ErrorCode::BadFrame));
}

#[test]
fn oversize_and_binary_frames_are_refused_unparsed() {
    let big = format!(r#"{{"t":"x","ref":"a","d":"{}"}}"#, "x".repeat(MAX));
    assert_eq!(bad(&big), (None, ErrorCode::TooLarge));
    let exactly = format!(r#"{{"t":"x","d":"{}"}}"#, "x".repeat(MAX - 16));
    assert_eq!(exactly.len(), MAX);
    assert!(decode(Incoming::Text(&exactly), MAX).is_ok());
    assert_eq!(decode(Incoming::Binary(3), MAX).unwrap_err().error.code, ErrorCode::BadFrame);
}

#[test]
fn server_frames_have_the_documented_shapes() {
    let parse = |s: String| serde_json::from_str::<Value>(&s).unwrap();
    assert_eq!(
        parse(event("member:join", &json!({"user":"a"}))),
        json!({"t":"member:join","d":{"user":"a"}})
    );
    assert_eq!(
        parse(reply_ok(&json!("r"), &json!({"seq":1}))),
        json!({"t":"reply","ref":"r","ok":true,"d":{"seq":1}})
    );
    let err = Error::new(ErrorCode::BadRequest, "nope");
    let expected_error = json!({"code":"bad_request","message":"nope"});
    assert_eq!(
        parse(failure(Some(&json!(3)), &err)),
        json!({"t":"reply","ref":3,"ok":false,"error":expected_error})
    );
    assert_eq!(parse(failure(None, &err)), json!({"t":"error","error":expected_error}));
    assert_eq!(parse(error_frame(&err)), json!({"t":"error","error":expected_error}));
}

#[test]
fn error_codes_map_to_http_statuses() {
    for (code, status) in [
        (ErrorCode::BadRequest, 400),
        (ErrorCode::Unauthorized, 401),
        (ErrorCode::Forbidden, 403),
        (ErrorCode::NotFound, 404),
        (ErrorCode::MethodNotAllowed, 405),
        (ErrorCode::TooLarge, 413),
        (ErrorCode::UpgradeRequired, 426),
        (ErrorCode::Internal, 500),
    ] {
        assert_eq!(code.http_status(), status, "{}", code.as_str());
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}
