//! Indexed payload fields: their kinds, and the keys a payload gives each of them.

use serde_json::{Map, Value};

/// What an indexed field holds. Every kind accepts one value or an array of values (a
/// document in two languages matches both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// Strings, matched exactly (`eq`, `in`).
    Keyword,
    /// Integers that fit an i64 (`eq`, `in`, ranges).
    Integer,
    /// Numbers (`eq`, `in`, ranges).
    Float,
    /// true / false (`eq`).
    Bool,
}

impl FieldKind {
    /// The code stored in the metadata.
    pub fn code(self) -> u64 {
        match self {
            FieldKind::Keyword => 1,
            FieldKind::Integer => 2,
            FieldKind::Float => 3,
            FieldKind::Bool => 4,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: u64) -> Option<FieldKind> {
        Some(match code {
            1 => FieldKind::Keyword,
            2 => FieldKind::Integer,
            3 => FieldKind::Float,
            4 => FieldKind::Bool,
            _ => return None,
        })
    }

    /// Its name, as `FieldSpec::parse` reads it.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Keyword => "keyword",
            FieldKind::Integer => "int",
            FieldKind::Float => "float",
            FieldKind::Bool => "bool",
        }
    }
}

impl std::str::FromStr for FieldKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<FieldKind> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "keyword" | "str" | "string" => FieldKind::Keyword,
            "int" | "integer" => FieldKind::Integer,
            "float" | "number" => FieldKind::Float,
            "bool" | "boolean" => FieldKind::Bool,
            other => {
                return Err(crate::Error::InvalidOption(format!(
                    "unknown field kind {other:?} (keyword, int, float or bool)"
                )));
            }
        })
    }
}

/// A field to index: a top-level key of the payloads, and its kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// The payload key.
    pub name: String,
    /// What it holds.
    pub kind: FieldKind,
}

/// Longest field name: names are metadata keys and appear in every filter.
pub const MAX_FIELD_NAME: usize = 255;

impl FieldSpec {
    /// A field named `name` of `kind`.
    pub fn new(name: impl Into<String>, kind: FieldKind) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            kind,
        }
    }

    /// Parses `name:kind` (as the CLI's `--index-field lang:keyword`).
    pub fn parse(text: &str) -> crate::Result<FieldSpec> {
        let (name, kind) = text.rsplit_once(':').ok_or_else(|| {
            crate::Error::InvalidOption(format!("field {text:?}: expected name:kind"))
        })?;
        let spec = FieldSpec::new(name, kind.parse()?);
        spec.check()?;
        Ok(spec)
    }

    /// Checks the name: non-empty, at most `MAX_FIELD_NAME` bytes.
    pub fn check(&self) -> crate::Result<()> {
        if self.name.is_empty() || self.name.len() > MAX_FIELD_NAME {
            return Err(crate::Error::InvalidOption(format!(
                "field name {:?} must have 1 to {MAX_FIELD_NAME} bytes",
                self.name
            )));
        }
        Ok(())
    }
}

/// One indexed value of a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    /// A keyword.
    Str(String),
    /// An integer.
    Int(i64),
    /// A number (never NaN: JSON has none).
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// The keys `payload` gives the field `spec`: none if the field is absent or null, else
/// one per value (an array gives each of its elements). A value of the wrong type is an
/// error naming the field, so that a write cannot store what its index would miss.
pub fn keys(spec: &FieldSpec, payload: &Map<String, Value>) -> Result<Vec<Key>, String> {
    let values: &[Value] = match payload.get(&spec.name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(values)) => values,
        Some(one) => std::slice::from_ref(one),
    };
    values
        .iter()
        .map(|v| {
            key_of(spec.kind, v).ok_or_else(|| {
                format!(
                    "field {:?} is indexed as {} but holds {v}",
                    spec.name,
                    spec.kind.name()
                )
            })
        })
        .collect()
}

/// `v` as a key of `kind`, if it is one.
pub fn key_of(kind: FieldKind, v: &Value) -> Option<Key> {
    match (kind, v) {
        (FieldKind::Keyword, Value::String(s)) => Some(Key::Str(s.clone())),
        (FieldKind::Integer, Value::Number(n)) => n.as_i64().map(Key::Int),
        (FieldKind::Float, Value::Number(n)) => n.as_f64().map(Key::Float),
        (FieldKind::Bool, Value::Bool(b)) => Some(Key::Bool(*b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_of_single_array_absent_and_wrong_values() {
        let lang = FieldSpec::parse("lang:keyword").unwrap();
        let year = FieldSpec::parse("year:int").unwrap();
        let p = json!({"lang": ["en", "de"], "year": 2020, "n": null});
        let p = p.as_object().unwrap();
        assert_eq!(
            keys(&lang, p).unwrap(),
            [Key::Str("en".into()), Key::Str("de".into())]
        );
        assert_eq!(keys(&year, p).unwrap(), [Key::Int(2020)]);
        assert!(
            keys(&FieldSpec::parse("n:float").unwrap(), p)
                .unwrap()
                .is_empty()
        );
        let bad = json!({"year": "2020"});
        assert!(keys(&year, bad.as_object().unwrap()).is_err());
        assert!(keys(&year, json!({"year": 1.5}).as_object().unwrap()).is_err());
        assert!(FieldSpec::parse("x:blob").is_err());
        assert!(FieldSpec::parse("nokind").is_err());
        assert!(FieldSpec::parse(":int").is_err());
    }
}
