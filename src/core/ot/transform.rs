//! `transform`, `compose` and cursor transformation, step for step as ot-text-unicode 4.0
//! does them, so every result equals the npm type's (the differential tests check this).

use super::{Component, Op};

/// Which op wins when both insert at the same place: `Left` goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This op's insert goes before the other's.
    Left,
    /// This op's insert goes after the other's.
    Right,
}

/// Which kind of component `take` must not split.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Whole {
    Inserts,
    Deletes,
}

/// Reads an op component by component, splitting components on request (the npm type's
/// `makeTake`). `offset` counts code points into the current component.
struct Reader<'a> {
    op: &'a [Component],
    index: usize,
    offset: u64,
}

impl<'a> Reader<'a> {
    fn new(op: &'a Op) -> Reader<'a> {
        Reader { op: op.components(), index: 0, offset: 0 }
    }

    fn peek(&self) -> Option<&Component> {
        self.op.get(self.index)
    }

    /// The rest of the current component.
    fn take_all(&mut self) -> Option<Component> {
        let c = self.op.get(self.index)?;
        let part = match c {
            Component::Skip(n) => Component::Skip(n.saturating_sub(self.offset)),
            Component::Insert(s) => Component::Insert(super::char_slice(s, self.offset, None).to_owned()),
            Component::Delete(d) => Component::Delete(d.slice(self.offset, None)),
        };
        self.index += 1;
        self.offset = 0;
        Some(part)
    }

    /// Up to `n` code points of the current component (a whole one when `whole` says so);
    /// past the end of the op, a skip of `n`: ops skip the rest of the document implicitly.
    fn take(&mut self, n: u64, whole: Whole) -> Component {
        let Some(c) = self.op.get(self.index) else { return Component::Skip(n) };
        let remaining = c.len().saturating_sub(self.offset);
        let indivisible = match c {
            Component::Insert(_) => whole == Whole::Inserts,
            Component::Delete(_) => whole == Whole::Deletes,
            Component::Skip(_) => false,
        };
        if indivisible || remaining <= n {
            return self.take_all().unwrap_or(Component::Skip(n));
        }
        // `n < remaining` here, so `end` stays within the component.
        let (start, end) = (self.offset, self.offset + n);
        self.offset = end;
        match c {
            Component::Skip(_) => Component::Skip(n),
            Component::Insert(s) => Component::Insert(super::char_slice(s, start, Some(end)).to_owned()),
            Component::Delete(d) => Component::Delete(d.slice(start, Some(end))),
        }
    }
}

/// Transforms `op` so it applies after `other` (both based on the same document), keeping its
/// intent. `side` breaks ties between inserts at the same place.
pub fn transform(op: &Op, other: &Op, side: Side) -> Op {
    let mut out = Op::noop();
    let mut reader = Reader::new(op);
    for c2 in other.components() {
        match c2 {
            Component::Skip(n) => {
                let mut length = *n;
                while length > 0 {
                    let c1 = reader.take(length, Whole::Inserts);
                    if !matches!(c1, Component::Insert(_)) {
                        length -= c1.len();
                    }
                    out.push(c1);
                }
            }
            Component::Insert(s) => {
                if side == Side::Left && matches!(reader.peek(), Some(Component::Insert(_))) {
                    out.extend(reader.take_all());
                }
                out.push(Component::Skip(super::chars(s)));
            }
            Component::Delete(d) => {
                let mut length = d.len();
                while length > 0 {
                    match reader.take(length, Whole::Inserts) {
                        Component::Skip(k) => length -= k,
                        insert @ Component::Insert(_) => out.push(insert),
                        // Already deleted by `other`: nothing left to delete.
                        Component::Delete(gone) => length -= gone.len(),
                    }
                }
            }
        }
    }
    while let Some(c) = reader.take_all() {
        out.push(c);
    }
    out.trim();
    out
}

/// The op that has the effect of `first` then `second`.
pub fn compose(first: &Op, second: &Op) -> Op {
    let mut out = Op::noop();
    let mut reader = Reader::new(first);
    for c2 in second.components() {
        match c2 {
            Component::Skip(n) => {
                let mut length = *n;
                while length > 0 {
                    let chunk = reader.take(length, Whole::Deletes);
                    if !matches!(chunk, Component::Delete(_)) {
                        length -= chunk.len();
                    }
                    out.push(chunk);
                }
            }
            Component::Insert(s) => out.push(Component::Insert(s.clone())),
            Component::Delete(d) => {
                let length = d.len();
                let mut offset = 0;
                while offset < length {
                    match reader.take(length - offset, Whole::Deletes) {
                        Component::Skip(k) => {
                            out.push(Component::Delete(d.slice(offset, Some(offset + k))));
                            offset += k;
                        }
                        // `second` deletes what `first` inserted: neither survives.
                        Component::Insert(s) => offset += super::chars(&s),
                        deleted @ Component::Delete(_) => out.push(deleted),
                    }
                }
            }
        }
    }
    while let Some(c) = reader.take_all() {
        out.push(c);
    }
    out.trim();
    out
}

/// Where a cursor at `cursor` (code points) ends up after `op`. An insert exactly at the cursor
/// goes after it (the cursor stays before the new text).
pub fn transform_position(cursor: u64, op: &Op) -> u64 {
    let mut cursor = cursor;
    let mut pos: u64 = 0;
    for c in op.components() {
        if cursor <= pos {
            break;
        }
        match c {
            Component::Skip(n) => pos = pos.saturating_add(*n),
            Component::Insert(s) => {
                let n = super::chars(s);
                pos = pos.saturating_add(n);
                cursor = cursor.saturating_add(n);
            }
            Component::Delete(d) => cursor -= d.len().min(cursor - pos),
        }
    }
    cursor
}

/// A selection `(anchor, head)` after `op`.
pub fn transform_selection(selection: (u64, u64), op: &Op) -> (u64, u64) {
    (transform_position(selection.0, op), transform_position(selection.1, op))
}

impl Op {
    fn extend(&mut self, c: Option<Component>) {
        if let Some(c) = c {
            self.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply;
    use super::*;
    use serde_json::{json, Value};

    fn op(v: Value) -> Op {
        Op::from_json(&v).unwrap()
    }

    #[test]
    fn concurrent_inserts_at_one_place_follow_the_side() {
        let (a, b) = (op(json!([1, "a"])), op(json!([1, "b"])));
        assert_eq!(transform(&a, &b, Side::Left).to_json(), json!([1, "a"]));
        assert_eq!(transform(&a, &b, Side::Right).to_json(), json!([2, "a"]));
        let doc = "xy";
        let left_first = apply(&apply(doc, &b).unwrap(), &transform(&a, &b, Side::Left)).unwrap();
        let right_first = apply(&apply(doc, &a).unwrap(), &transform(&b, &a, Side::Right)).unwrap();
        assert_eq!(left_first, "xaby");
        assert_eq!(left_first, right_first, "TP1");
    }

    #[test]
    fn deletes_that_overlap_delete_once() {
        let (a, b) = (op(json!([1, {"d": 3}])), op(json!([2, {"d": 3}])));
        let doc = "0123456";
        let ab = apply(&apply(doc, &a).unwrap(), &transform(&b, &a, Side::Right)).unwrap();
        let ba = apply(&apply(doc, &b).unwrap(), &transform(&a, &b, Side::Left)).unwrap();
        assert_eq!(ab, "056");
        assert_eq!(ab, ba);
    }

    #[test]
    fn compose_equals_applying_both() {
        let doc = "hello😀 world";
        let a = op(json!([5, "!!", 1, {"d": 1}]));
        let b = op(json!([2, {"d": 4}, "X", 3, "é"]));
        let both = apply(&apply(doc, &a).unwrap(), &b).unwrap();
        assert_eq!(apply(doc, &compose(&a, &b)).unwrap(), both);
        assert_eq!(compose(&op(json!(["abc"])), &op(json!([1, {"d": 1}]))).to_json(), json!(["ac"]));
    }

    #[test]
    fn cursors_move_with_text() {
        let o = op(json!([2, "abc", 1, {"d": 2}]));
        assert_eq!(transform_position(0, &o), 0);
        assert_eq!(transform_position(2, &o), 2, "an insert at the cursor goes after it");
        assert_eq!(transform_position(3, &o), 6);
        assert_eq!(transform_position(4, &o), 6, "inside a deletion: to where it was");
        assert_eq!(transform_position(5, &o), 6);
        assert_eq!(transform_position(9, &o), 10);
        assert_eq!(transform_selection((3, 9), &o), (6, 10));
    }
}
