//! A raw exchange token: zeroized on drop, never printed by `Debug`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A raw access or refresh token as it travels on the wire.
///
/// It can only be read through [`Secret::expose`], so every place that touches
/// the plain value is easy to find.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// Wraps a raw token.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The raw value. Call it only to encrypt it or to hand it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the token is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("tok-very-secret".into());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }

    #[test]
    fn round_trips_as_a_plain_json_string() {
        let secret: Secret = serde_json::from_str("\"abc\"").expect("valid json");
        assert_eq!(secret.expose(), "abc");
        assert_eq!(
            serde_json::to_string(&secret).expect("serializes"),
            "\"abc\""
        );
    }
}
