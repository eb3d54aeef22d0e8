//! The server's OT type for JavaScript: the very files of `src/core/ot/` compiled on their own
//! (they need only `serde_json`), so tests in Node — and a browser client — run the same
//! transform the document object runs. `type.cjs` wraps these functions in the shape of an
//! ot-text-unicode type (`apply`, `transform`, `compose`, ...), passing ops as JSON text.
//!
//! Inputs are checked as the npm type's `checkOp` checks them; errors become JS exceptions.

#[path = "../src/core/ot/mod.rs"]
#[allow(dead_code, unused_imports)]
mod ot;

use ot::{Op, OtError, Side};
use serde_json::Value;
use wasm_bindgen::prelude::*;

fn parse(json: &str) -> Result<Op, JsError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| JsError::new(&format!("op is not JSON: {e}")))?;
    Op::check(&value).map_err(js)
}

fn js(e: OtError) -> JsError {
    JsError::new(&e.0)
}

/// `apply(doc, op)`: the text after `op`.
#[wasm_bindgen]
pub fn apply(doc: &str, op: &str) -> Result<String, JsError> {
    ot::apply(doc, &parse(op)?).map_err(js)
}

/// `transform(op, other, side)` with side `"left"` or `"right"`, as JSON.
#[wasm_bindgen]
pub fn transform(op: &str, other: &str, side: &str) -> Result<String, JsError> {
    let side = match side {
        "left" => Side::Left,
        "right" => Side::Right,
        _ => return Err(JsError::new(&format!("side ({side}) must be 'left' or 'right'"))),
    };
    Ok(ot::transform(&parse(op)?, &parse(other)?, side).to_json().to_string())
}

/// `compose(first, second)`, as JSON.
#[wasm_bindgen]
pub fn compose(first: &str, second: &str) -> Result<String, JsError> {
    Ok(ot::compose(&parse(first)?, &parse(second)?).to_json().to_string())
}

/// `normalize(op)`: merged neighbours, no empty components, no trailing skip.
#[wasm_bindgen]
pub fn normalize(op: &str) -> Result<String, JsError> {
    let value: Value = serde_json::from_str(op).map_err(|e| JsError::new(&format!("op is not JSON: {e}")))?;
    Ok(Op::from_json(&value).map_err(js)?.to_json().to_string())
}

/// `checkOp(op)`: throws when the npm type would.
#[wasm_bindgen(js_name = checkOp)]
pub fn check_op(op: &str) -> Result<(), JsError> {
    parse(op).map(|_| ())
}

/// `transformPosition(cursor, op)`.
#[wasm_bindgen(js_name = transformPosition)]
pub fn transform_position(cursor: u32, op: &str) -> Result<u32, JsError> {
    let moved = ot::transform_position(u64::from(cursor), &parse(op)?);
    u32::try_from(moved).map_err(|_| JsError::new("position out of range"))
}
