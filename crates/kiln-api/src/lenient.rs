//! Lenient decoding for values clients spell loosely. The SDK lower-cases only
//! top-level booleans in query strings, so nested ones arrive as `True`/`False`.

use serde::{Deserialize, Deserializer};

/// An optional boolean accepting `true`/`false` in any case, as text or JSON.
pub fn opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Bool(bool),
        Text(String),
    }
    match Option::<Loose>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Loose::Bool(b)) => Ok(Some(b)),
        Some(Loose::Text(t)) if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Loose::Text(t)) if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(Loose::Text(t)) => Err(serde::de::Error::custom(format!(
            "expected true or false, got {t}"
        ))),
    }
}
