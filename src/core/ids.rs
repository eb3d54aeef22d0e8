//! Identifiers. Each is a newtype that can only be built from a valid string, so a handler
//! holding a `RoomId` never re-checks it.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Longest id of any kind, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Every allowed character is ASCII, so ids are checked byte by byte (a multi-byte character
/// fails on its first byte) instead of decoding characters.
fn valid_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@')
}

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Empty string.
    Empty,
    /// Over [`MAX_ID_LEN`] bytes.
    TooLong,
    /// A character outside `A-Z a-z 0-9 - _ . : @`.
    BadChar,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => write!(f, "must not be empty"),
            IdError::TooLong => write!(f, "must be at most {MAX_ID_LEN} characters"),
            IdError::BadChar => write!(f, "may only contain A-Z a-z 0-9 - _ . : @"),
        }
    }
}

fn check(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        Err(IdError::Empty)
    } else if s.len() > MAX_ID_LEN {
        Err(IdError::TooLong)
    } else if !s.bytes().all(valid_id_byte) {
        Err(IdError::BadChar)
    } else {
        Ok(())
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        /// Written as the string it is (serde's `into = "String"` would copy it first).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Validates and wraps `s`.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check(s).map(|()| $name(s.to_owned()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check(&s).map(|()| $name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A room, named by the client in `/v1/rooms/:room/...`.
    RoomId
);
id_type!(
    /// A user: the JWT `sub`.
    UserId
);
id_type!(
    /// One socket, chosen by the server when it accepts the upgrade.
    ConnId
);
id_type!(
    /// A collaborative document, named by the client in `/v1/docs/:doc/...`.
    DocId
);

impl std::error::Error for IdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(RoomId::parse("general").is_ok());
        assert!(RoomId::parse("team-1_a.b:c@d").is_ok());
        assert!(RoomId::parse(&"x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_ids() {
        assert_eq!(RoomId::parse(""), Err(IdError::Empty));
        assert_eq!(RoomId::parse(&"x".repeat(MAX_ID_LEN + 1)), Err(IdError::TooLong));
        for bad in ["a b", "a/b", "é", "a%20", "a\n", "<script>"] {
            assert_eq!(RoomId::parse(bad), Err(IdError::BadChar), "{bad:?}");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<UserId>("\"alice\"").is_ok());
        assert!(serde_json::from_str::<UserId>("\"al ice\"").is_err());
    }
}
