//! Plain-text operational transformation in the op format of the npm package
//! `ot-text-unicode` 4.0 (the text type ShareDB uses), so a browser can transform locally with
//! that package and the server agrees with it result for result.
//!
//! An op is a list of components walked over the document: a number skips that many
//! characters, a string inserts it, `{"d": n}` deletes n characters (`{"d": "text"}` deletes
//! as many, carrying the text for inversion). Positions and lengths count Unicode code points,
//! never UTF-16 units or bytes. Trailing skips are optional on input; the normalized form has
//! none, merges neighbours of the same kind, and is what the npm type's `checkOp` accepts.
//!
//! Lengths and positions are `u64` everywhere, never `usize`: `usize` is 32 bits on wasm32, and
//! an op the host would refuse must not wrap into a different op in production. Numbers are
//! bounded by [`MAX_LEN`] (what a JS number carries exactly) and sums saturate, so an op whose
//! skips and deletes exceed the document is refused by [`apply`] rather than wrapped.
//!
//! This module depends on nothing but `serde_json`, so the same files compile into the
//! Node/browser binding in `ot-js/` (see DESIGN §8: the Worker runtime must stay out of it).

mod transform;

pub use transform::{compose, transform, transform_position, transform_selection, Side};

use serde_json::{Map, Value};
use std::fmt;

/// Why an op was refused; the message says which component and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtError(pub String);

impl fmt::Display for OtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OtError {}

/// The largest skip, delete or position accepted: 2^53 − 1, the largest integer a JS number
/// (and so every client) carries exactly.
pub const MAX_LEN: u64 = (1 << 53) - 1;

fn err<T>(message: impl Into<String>) -> Result<T, OtError> {
    Err(OtError(message.into()))
}

/// What a delete removes: a count, or the text itself (same length, invertible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// This many code points.
    Count(u64),
    /// These characters.
    Text(String),
}

impl Deleted {
    /// Length in code points.
    pub fn len(&self) -> u64 {
        match self {
            Deleted::Count(n) => *n,
            Deleted::Text(s) => chars(s),
        }
    }

    /// Whether it deletes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part from code point `start` to `end` (to the end when `None`).
    fn slice(&self, start: u64, end: Option<u64>) -> Deleted {
        match self {
            Deleted::Count(n) => Deleted::Count(end.map_or(*n, |e| e.min(*n)).saturating_sub(start)),
            Deleted::Text(s) => Deleted::Text(char_slice(s, start, end).to_owned()),
        }
    }
}

/// One step of an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// Keep this many code points.
    Skip(u64),
    /// Insert this text.
    Insert(String),
    /// Delete.
    Delete(Deleted),
}

impl Component {
    /// Length in code points.
    pub fn len(&self) -> u64 {
        match self {
            Component::Skip(n) => *n,
            Component::Insert(s) => chars(s),
            Component::Delete(d) => d.len(),
        }
    }

    /// Whether it changes or covers nothing (the npm type drops these when appending).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A normalized op: no empty components, no two neighbours of the same kind, no trailing skip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Op(Vec<Component>);

impl Op {
    /// The empty op (changes nothing).
    pub fn noop() -> Op {
        Op(Vec::new())
    }

    /// The components.
    pub fn components(&self) -> &[Component] {
        &self.0
    }

    /// Whether it changes nothing.
    pub fn is_noop(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds the normalized form of `components`, as the npm type's `normalize` does: empty
    /// components dropped, neighbours merged, a trailing skip removed.
    pub fn normalize(components: impl IntoIterator<Item = Component>) -> Op {
        let mut op = Op::noop();
        for c in components {
            op.push(c);
        }
        op.trim();
        op
    }

    /// Appends `c`, merging it into the last component when they are of the same kind (the
    /// npm type's `makeAppend`).
    fn push(&mut self, c: Component) {
        if c.is_empty() {
            return;
        }
        match (self.0.last_mut(), c) {
            (Some(Component::Skip(a)), Component::Skip(b)) => *a = a.saturating_add(b),
            (Some(Component::Insert(a)), Component::Insert(b)) => a.push_str(&b),
            (Some(Component::Delete(a)), Component::Delete(b)) => {
                *a = match (std::mem::replace(a, Deleted::Count(0)), b) {
                    (Deleted::Text(mut x), Deleted::Text(y)) => {
                        x.push_str(&y);
                        Deleted::Text(x)
                    }
                    (x, y) => Deleted::Count(x.len().saturating_add(y.len())),
                }
            }
            (_, c) => self.0.push(c),
        }
    }

    fn trim(&mut self) {
        if matches!(self.0.last(), Some(Component::Skip(_))) {
            self.0.pop();
        }
    }

    /// Reads an op from JSON, leniently as the server does: trailing and adjacent skips and
    /// neighbours of the same kind are accepted and normalized away. Wrong types, non-integer or
    /// zero skips and deletes, and empty inserts are errors.
    pub fn from_json(value: &Value) -> Result<Op, OtError> {
        let Value::Array(items) = value else { return err("an op must be an array of components") };
        let mut components = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            components.push(component(i, item)?);
        }
        Ok(Op::normalize(components))
    }

    /// Checks `value` exactly as the npm type's `checkOp` does (no trailing skip, no adjacent
    /// skips, nothing empty) and returns it as an op.
    pub fn check(value: &Value) -> Result<Op, OtError> {
        let Value::Array(items) = value else { return err("an op must be an array of components") };
        let mut previous_skip = false;
        let mut components = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let c = component(i, item)?;
            let skip = matches!(c, Component::Skip(_));
            if skip && previous_skip {
                return err(format!("component {i}: adjacent skips must be combined"));
            }
            previous_skip = skip;
            components.push(c);
        }
        if previous_skip {
            return err("the op has a trailing skip");
        }
        Ok(Op::normalize(components))
    }

    /// The op as JSON, in the npm type's format.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|c| match c {
                    Component::Skip(n) => Value::from(*n),
                    Component::Insert(s) => Value::String(s.clone()),
                    Component::Delete(d) => {
                        let mut m = Map::new();
                        let v = match d {
                            Deleted::Count(n) => Value::from(*n),
                            Deleted::Text(s) => Value::String(s.clone()),
                        };
                        m.insert("d".into(), v);
                        Value::Object(m)
                    }
                })
                .collect(),
        )
    }

    /// Code points the op reads from the document it applies to (skips and deletes).
    pub fn base_len(&self) -> u64 {
        self.0
            .iter()
            .filter(|c| !matches!(c, Component::Insert(_)))
            .fold(0, |sum, c| sum.saturating_add(c.len()))
    }

    /// Code points the op leaves in place of what it reads (skips and inserts).
    pub fn target_len(&self) -> u64 {
        self.0
            .iter()
            .filter(|c| !matches!(c, Component::Delete(_)))
            .fold(0, |sum, c| sum.saturating_add(c.len()))
    }
}

fn component(i: usize, item: &Value) -> Result<Component, OtError> {
    let whole = |v: &Value, what: &str| -> Result<u64, OtError> {
        match v.as_u64() {
            Some(n) if n > MAX_LEN => err(format!("component {i}: {what} is over 2^53 - 1")),
            Some(n) if n > 0 => Ok(n),
            _ => err(format!("component {i}: {what} must be a whole number above 0")),
        }
    };
    match item {
        Value::Number(_) => whole(item, "a skip").map(Component::Skip),
        Value::String(s) if s.is_empty() => err(format!("component {i}: an insert must not be empty")),
        Value::String(s) => Ok(Component::Insert(s.clone())),
        Value::Object(m) if m.len() == 1 => match m.get("d") {
            Some(Value::String(s)) if s.is_empty() => {
                err(format!("component {i}: a delete must not be empty"))
            }
            Some(Value::String(s)) => Ok(Component::Delete(Deleted::Text(s.clone()))),
            Some(n @ Value::Number(_)) => whole(n, "a delete").map(|n| Component::Delete(Deleted::Count(n))),
            _ => err(format!("component {i}: a delete is {{\"d\": count}} or {{\"d\": \"text\"}}")),
        },
        _ => err(format!(
            "component {i}: must be a number (skip), a string (insert) or {{\"d\": ...}} (delete)"
        )),
    }
}

/// Applies `op` to `doc`. Skipping or deleting past the end is an error (the npm type throws on
/// skips and silently clips deletes; here both are refused).
pub fn apply(doc: &str, op: &Op) -> Result<String, OtError> {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    for c in op.components() {
        match c {
            Component::Skip(n) => {
                let at = byte_offset(rest, *n)
                    .ok_or_else(|| OtError("the op skips past the end of the document".into()))?;
                out.push_str(&rest[..at]);
                rest = &rest[at..];
            }
            Component::Insert(s) => out.push_str(s),
            Component::Delete(d) => {
                let at = byte_offset(rest, d.len())
                    .ok_or_else(|| OtError("the op deletes past the end of the document".into()))?;
                rest = &rest[at..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Code points in `s`.
pub fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

/// The byte offset of code point `n` of `s`; `None` past the end.
fn byte_offset(s: &str, n: u64) -> Option<usize> {
    if n == 0 {
        return Some(0);
    }
    // Past usize (wasm32) is past the end of any string this process holds.
    let index = usize::try_from(n).ok()?;
    match s.char_indices().nth(index) {
        Some((at, _)) => Some(at),
        None => (chars(s) == n).then_some(s.len()),
    }
}

/// Code points `start..end` of `s` (to the end when `end` is `None`), clipped to `s`.
fn char_slice(s: &str, start: u64, end: Option<u64>) -> &str {
    let from = byte_offset(s, start).unwrap_or(s.len());
    let rest = &s[from..];
    match end {
        Some(e) => &rest[..byte_offset(rest, e.saturating_sub(start)).unwrap_or(rest.len())],
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use transform::transform_position;

    fn op(v: Value) -> Op {
        Op::from_json(&v).unwrap()
    }

    #[test]
    fn parsing_normalizes_and_refuses_bad_components() {
        assert_eq!(op(json!([2, 3, "a", "b", {"d": 1}, {"d": 2}, 4])).to_json(), json!([5, "ab", {"d": 3}]));
        assert_eq!(op(json!([{"d": "x"}, {"d": "y"}])).to_json(), json!([{"d": "xy"}]));
        assert_eq!(op(json!([{"d": "x"}, {"d": 1}])).to_json(), json!([{"d": 2}]));
        assert_eq!(op(json!([3])), Op::noop());
        for bad in [
            json!(5),
            json!([0]),
            json!([""]),
            json!([{"d": 0}]),
            json!([{"d": ""}]),
            json!([1.5]),
            json!([-1]),
            json!([null]),
            json!([true]),
            json!([{"x": 1}]),
            json!([{"d": 1, "x": 1}]),
            json!([[1]]),
        ] {
            assert!(Op::from_json(&bad).is_err(), "{bad}");
        }
        assert!(Op::check(&json!([1, 2, "a"])).unwrap_err().0.contains("adjacent"));
        assert!(Op::check(&json!(["a", 1])).unwrap_err().0.contains("trailing"));
        assert!(Op::check(&json!(["a", "b", {"d": 1}])).is_ok(), "the npm check allows adjacent inserts");
    }

    #[test]
    fn lengths_never_wrap_at_32_bits() {
        // Summed in usize on wasm32, these two skips wrapped to 0 and the op became ["x"].
        let wrapped = op(json!([4294967295u64, 1, "x"]));
        assert_eq!(wrapped.to_json(), json!([4294967296u64, "x"]));
        assert!(apply("", &wrapped).is_err());
        assert_eq!(op(json!([{"d": 4294967295u64}, {"d": 1}])).base_len(), 1 << 32);
        assert!(Op::from_json(&json!([9007199254740992u64, "x"])).is_err(), "past 2^53 - 1");
        let most = op(json!([9007199254740991u64, "x", 9007199254740991u64, "y"]));
        assert_eq!(most.base_len(), 2 * MAX_LEN);
        assert_eq!(transform_position(u64::MAX, &most), u64::MAX, "saturates");
    }

    #[test]
    fn apply_counts_code_points() {
        let doc = "a😀b\u{301}c";
        assert_eq!(apply(doc, &op(json!([1, {"d": 1}, "x"]))).unwrap(), "axb\u{301}c");
        assert_eq!(
            apply(doc, &op(json!([3, "é"]))).unwrap(),
            "a😀bé\u{301}c",
            "between a letter and its mark"
        );
        assert_eq!(apply("", &op(json!(["hi"]))).unwrap(), "hi");
        assert!(apply("ab", &op(json!([3, "x"]))).is_err());
        assert!(apply("ab", &op(json!([1, {"d": 2}]))).is_err());
        assert_eq!(apply("ab", &op(json!([2, "x"]))).unwrap(), "abx");
    }

    #[test]
    fn slices() {
        assert_eq!(char_slice("a😀bc", 1, Some(3)), "😀b");
        assert_eq!(char_slice("a😀bc", 2, None), "bc");
        assert_eq!(char_slice("ab", 5, None), "");
        assert_eq!(Deleted::Count(5).slice(2, Some(4)), Deleted::Count(2));
        assert_eq!(Deleted::Count(5).slice(2, None), Deleted::Count(3));
        assert_eq!(Deleted::Count(5).slice(2, Some(9)), Deleted::Count(3));
    }
}
