//! Indexed payload fields: their kinds, and the keys a payload gives each of them.

use serde_json::{Map, Value};

use super::number::Num;

/// What an indexed field holds. Every kind accepts one value or an array of values (a
/// document in two languages matches both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// Strings, matched exactly (`eq`, `in`).
    Keyword,
    /// Integers that fit an i64 (`eq`, `in`, ranges; compared with any number by value).
    Integer,
    /// Numbers (`eq`, `in`, ranges; integers kept exact, not rounded to f64).
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

/// Most indexed fields an index may have: every write with a payload updates each
/// field's index, and the metadata reads them all at open.
pub const MAX_FIELDS: usize = 256;

/// Checks a list of field declarations: each name (`FieldSpec::check`), no name twice,
/// at most `MAX_FIELDS` of them.
pub fn check_fields(specs: &[FieldSpec]) -> crate::Result<()> {
    if specs.len() > MAX_FIELDS {
        return Err(crate::Error::InvalidOption(format!(
            "{} indexed fields; the limit is {MAX_FIELDS}",
            specs.len()
        )));
    }
    let mut names = std::collections::HashSet::with_capacity(specs.len());
    for spec in specs {
        spec.check()?;
        if !names.insert(&spec.name) {
            return Err(crate::Error::InvalidOption(format!(
                "field {:?} is declared twice",
                spec.name
            )));
        }
    }
    Ok(())
}

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
    /// A number of an int or float field, by its exact value.
    Num(Num),
    /// A boolean.
    Bool(bool),
}

/// The keys `payload` gives the field `name` of `kind`: none if the field is absent or
/// null, else one per value (an array gives each of its elements). A value of the wrong
/// type is an error naming the field, so that a write cannot store what its index would
/// miss.
pub fn keys(name: &str, kind: FieldKind, payload: &Map<String, Value>) -> Result<Vec<Key>, String> {
    values(name, payload)
        .iter()
        .map(|v| {
            key_of(kind, v).ok_or_else(|| {
                format!("field {name:?} is indexed as {} but holds {v}", kind.name())
            })
        })
        .collect()
}

/// The values `payload` gives the field `name`: none if it is absent or null, each
/// element of an array, else the one value.
fn values<'a>(name: &str, payload: &'a Map<String, Value>) -> &'a [Value] {
    match payload.get(name) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(values)) => values,
        Some(one) => std::slice::from_ref(one),
    }
}

/// What `payload` gives the undeclared field `name`, of whatever types: whether it is
/// present (a value that is not null), and the keys of its strings, numbers and booleans
/// as a declared field of their kind would index them (a float field's numbers: every
/// number by its exact value). Nested arrays and objects (which no declared field
/// holds) are present but match no value.
pub fn any_keys(name: &str, payload: &Map<String, Value>) -> (bool, Vec<Key>) {
    let values = values(name, payload);
    let present = values.iter().any(|v| !v.is_null());
    let keys = values
        .iter()
        .filter_map(|v| match v {
            Value::String(_) => key_of(FieldKind::Keyword, v),
            Value::Number(_) => key_of(FieldKind::Float, v),
            Value::Bool(_) => key_of(FieldKind::Bool, v),
            _ => None,
        })
        .collect();
    (present, keys)
}

/// `v` as a key of `kind`, if it is one.
pub fn key_of(kind: FieldKind, v: &Value) -> Option<Key> {
    match (kind, v) {
        (FieldKind::Keyword, Value::String(s)) => Some(Key::Str(s.clone())),
        // Writes keep int fields to i64 (what the docs promise); a float field takes any
        // number, kept exact (a u64 or an i64 beyond 2^53 is not rounded to an f64).
        (FieldKind::Integer, Value::Number(n)) => n.as_i64().map(|i| Key::Num(Num::Int(i.into()))),
        (FieldKind::Float, Value::Number(n)) => Some(Key::Num(Num::of(n))),
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
            keys(&lang.name, lang.kind, p).unwrap(),
            [Key::Str("en".into()), Key::Str("de".into())]
        );
        assert_eq!(
            keys("year", year.kind, p).unwrap(),
            [Key::Num(Num::Int(2020))]
        );
        assert!(keys("n", FieldKind::Float, p).unwrap().is_empty());
        let bad = json!({"year": "2020"});
        assert!(keys("year", year.kind, bad.as_object().unwrap()).is_err());
        assert!(keys("year", year.kind, json!({"year": 1.5}).as_object().unwrap()).is_err());
        assert!(FieldSpec::parse("x:blob").is_err());
        assert!(FieldSpec::parse("nokind").is_err());
        assert!(FieldSpec::parse(":int").is_err());
    }
}
