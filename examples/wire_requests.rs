//! Prints what every object accepts on its sockets, read off the Rust definitions themselves:
//! for each event of `room::Request`, `user::Request` and `doc::Request`, the payload's fields
//! and whether each is required, or `null` for an event that takes no payload.
//!
//! ```text
//! cargo run --quiet --example wire_requests
//! {"doc":{"auth:refresh":{"token":"required"},"cursor:update":{"anchor":"optional",…},…},…}
//! ```
//!
//! The SDK's contract test (`clients/js/test/contract.test.mjs`) compares this with the request
//! interfaces of `clients/js/src/types.ts`, so the two cannot drift.
//!
//! Nothing here is a list kept by hand. Each payload is deserialized through
//! [`Requests::deserialize`], the same serde code that decodes frames, from a small deserializer
//! of our own, a prober, that hands the payload struct a value of whatever type each field asks
//! for:
//! - with every field, it learns the field names from the `fields` serde passes to
//!   `deserialize_struct` (an event whose decoding never asks for anything takes no payload);
//! - then once per field, with every field but that one. Serde reports an absent field that has
//!   no default as [`serde::de::Error::missing_field`]: if leaving a field out ends in exactly
//!   that error for exactly that field, it is required; if the struct still decodes, it is
//!   optional (a `#[serde(default)]`, or an `Option`). Any other outcome is a payload the probe
//!   cannot judge, and the program fails rather than guess.
//!
//! As a check on the probe, every payload is then decoded from `{}` by the production path
//! ([`Requests::decode`] over `serde_json`), which must fail exactly when a field is required.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{json, Map, Value};
use std::fmt;
use switchboard::core::protocol::Requests;
use switchboard::core::{doc, room, user};

fn main() {
    let described = (|| -> Result<Value, String> {
        Ok(json!({
            "room": describe::<room::Request>()?,
            "user": describe::<user::Request>()?,
            "doc": describe::<doc::Request>()?,
        }))
    })();
    match described {
        Ok(all) => println!("{all}"),
        Err(e) => {
            eprintln!("wire_requests: {e}");
            std::process::exit(1);
        }
    }
}

/// `{event: {field: "required" | "optional"} | null}` for every event of `R`.
fn describe<R: Requests>() -> Result<Value, String> {
    let mut events = Map::new();
    for &event in R::EVENTS {
        let name = R::name(event);
        // With every field: learns the field names, and checks the probe can build the payload.
        let mut shape = None;
        let full = R::deserialize(event, Prober { omit: None, shape: &mut shape });
        let fields = match (shape, full) {
            (None, Ok(_)) => {
                events.insert(name.into(), Value::Null);
                continue;
            }
            (Some(Shape::Struct(fields)), Ok(_)) => fields,
            (Some(Shape::Struct(_)), Err(e)) => {
                return Err(format!("{name}: the probe cannot build this payload even with every field: {e}"))
            }
            (Some(Shape::Other(asked)), _) => {
                return Err(format!("{name}: the payload is not a plain struct (serde asked for {asked})"))
            }
            (None, Err(e)) => {
                return Err(format!("{name}: the payload failed before asking for anything: {e}"))
            }
        };
        let mut out = Map::new();
        for &field in fields {
            let required = match R::deserialize(event, Prober { omit: Some(field), shape: &mut None }) {
                Ok(_) => false,
                Err(ProbeError::Missing(missing)) if missing == field => true,
                Err(e) => return Err(format!("{name}: cannot tell whether {field} is required: {e}")),
            };
            out.insert(field.into(), (if required { "required" } else { "optional" }).into());
        }
        let any_required = out.values().any(|v| v == "required");
        let empty = serde_json::value::RawValue::from_string("{}".into()).map_err(|e| e.to_string())?;
        if R::decode(event, Some(empty)).is_ok() == any_required {
            return Err(format!(
                "{name}: decoding {{}} with serde_json {} but the probe found {} required field",
                if any_required { "succeeds" } else { "fails" },
                if any_required { "a" } else { "no" },
            ));
        }
        events.insert(name.into(), Value::Object(out));
    }
    Ok(Value::Object(events))
}

/// What serde asked the prober for.
enum Shape {
    /// A struct with these fields (serde's names, after any `rename`).
    Struct(&'static [&'static str]),
    /// Something else; the name of what serde asked for.
    Other(&'static str),
}

#[derive(Debug)]
enum ProbeError {
    /// Serde's own report of an absent field without a default.
    Missing(&'static str),
    Other(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Missing(field) => write!(f, "missing field `{field}`"),
            ProbeError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ProbeError::Other(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        ProbeError::Missing(field)
    }
}

/// A payload struct with every field but `omit`, each holding a value of the type it asks for;
/// notes in `shape` what serde asked for (a struct's field names come with the question).
struct Prober<'a> {
    omit: Option<&'static str>,
    shape: &'a mut Option<Shape>,
}

impl<'de> de::Deserializer<'de> for Prober<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        *self.shape = Some(Shape::Other("something other than a struct"));
        Err(ProbeError::Other("the payload is not a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        *self.shape = Some(Shape::Struct(fields));
        let omit = self.omit;
        visitor.visit_map(Fields { keys: fields.iter().filter(move |f| Some(**f) != omit) })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The fields of a probed struct, each with an [`Anything`] value.
struct Fields<I> {
    keys: I,
}

impl<'de, I: Iterator<Item = &'static &'static str>> de::MapAccess<'de> for Fields<I> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ProbeError> {
        match self.keys.next() {
            Some(key) => seed.deserialize((*key).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ProbeError> {
        seed.deserialize(Anything)
    }
}

/// `deserialize_*` methods that all answer with the same `visit_*` call.
macro_rules! answer {
    ($($method:ident $visit:ident $args:tt)+) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
                visitor.$visit $args
            }
        )+
    };
}

/// A value of whatever type is asked for: zero, `false`, `"a"` (a valid id too), empty lists
/// and maps, `null` for any JSON, the first variant of an enum, structs with every field.
#[derive(Clone, Copy)]
struct Anything;

impl<'de> de::Deserializer<'de> for Anything {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_bool(false)
    }

    answer! {
        deserialize_i8 visit_i64(0) deserialize_i16 visit_i64(0) deserialize_i32 visit_i64(0)
        deserialize_i64 visit_i64(0) deserialize_i128 visit_i64(0)
        deserialize_u8 visit_u64(0) deserialize_u16 visit_u64(0) deserialize_u32 visit_u64(0)
        deserialize_u64 visit_u64(0) deserialize_u128 visit_u64(0)
        deserialize_f32 visit_f64(0.0) deserialize_f64 visit_f64(0.0)
        deserialize_str visit_str("a") deserialize_string visit_str("a") deserialize_identifier visit_str("a")
        deserialize_bytes visit_bytes(b"a") deserialize_byte_buf visit_bytes(b"a")
        deserialize_unit visit_unit()
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_char('a')
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(Anything)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        // JSON kept as text (a message's `data`) asks serde_json's way: a one-entry map from
        // this token to the text.
        const RAW_JSON: &str = "$serde_json::private::RawValue";
        if name == RAW_JSON {
            let text = std::iter::once((RAW_JSON, "null"));
            return visitor.visit_map(de::value::MapDeserializer::<_, ProbeError>::new(text));
        }
        visitor.visit_newtype_struct(Anything)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<()>()))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<((), ())>()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_map(Fields { keys: fields.iter() })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let first = variants.first().ok_or_else(|| ProbeError::Other("an enum without variants".into()))?;
        visitor.visit_enum((*first).into_deserializer())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::repeat_n(Anything, len)))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_tuple(len, visitor)
    }
}

impl<'de> IntoDeserializer<'de, ProbeError> for Anything {
    type Deserializer = Anything;

    fn into_deserializer(self) -> Anything {
        self
    }
}
