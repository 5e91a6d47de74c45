//! Payload filtering: indexed fields (`fields`), filter expressions (`expr`) and the
//! field index that turns a filter into the bitmap of slots it admits (`bitmaps`). It
//! knows payloads and slots, nothing of the graph or the log: the index's planner
//! (`index/query.rs`) decides how a filtered search uses the bitmap.

mod bitmaps;
mod expr;
mod fields;
mod number;

pub use bitmaps::{FieldIndex, Scan};
pub use expr::{Bound, Filter};
pub use fields::{FieldKind, FieldSpec, MAX_FIELD_NAME, MAX_FIELDS, check_fields};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The largest payload, serialised: payloads ride in log records and metadata values,
/// and are meant for filterable attributes and small documents, not blobs. It also bounds
/// every string, key and key count in a payload.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The deepest nesting of arrays and objects in a payload or a filter (a payload object
/// of scalars is 1 deep). It is exactly what serde_json's parser reads back (its limit of
/// 128 fails on the 128th level), so that nothing written is unreadable; and it bounds
/// every recursion over a payload or filter (formatting, serialising, evaluating).
pub const MAX_JSON_DEPTH: usize = 127;

/// Whether `v` nests arrays and objects more than `max` deep, found without recursion:
/// a value built deeper than any parser reads (a caller's `Value`) must not overflow the
/// stack before it is refused.
pub(crate) fn deeper_than(v: &Value, max: usize) -> bool {
    // Each entry: a value and the level it is at if it is an array or object.
    let mut stack = vec![(v, 1usize)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Array(_) | Value::Object(_) if level > max => return true,
            Value::Array(items) => stack.extend(items.iter().map(|c| (c, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|c| (c, level + 1))),
            _ => {}
        }
    }
    false
}

/// A payload checked and serialised for storage: a JSON object of at most
/// `MAX_PAYLOAD_BYTES` and `MAX_JSON_DEPTH`, whose indexed fields hold values of their
/// kinds.
pub fn encode_payload(payload: &Value, specs: &[FieldSpec]) -> Result<Vec<u8>> {
    // First: formatting or serialising a deeper value would recurse without bound.
    if deeper_than(payload, MAX_JSON_DEPTH) {
        return Err(Error::InvalidPayload(format!(
            "it nests arrays and objects more than {MAX_JSON_DEPTH} deep"
        )));
    }
    let object = payload.as_object().ok_or_else(|| {
        Error::InvalidPayload(format!("a payload is a JSON object, not {payload}"))
    })?;
    FieldIndex::check(specs, object)?;
    let bytes = serde_json::to_vec(payload)
        .map_err(|e| Error::InvalidPayload(format!("cannot serialise: {e}")))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::InvalidPayload(format!(
            "{} bytes serialised; the limit is {MAX_PAYLOAD_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// A stored payload parsed back, under the limits `encode_payload` wrote it within
/// (`None` if the bytes are not such a JSON object, which only damage can cause: callers
/// report it as corruption).
pub fn decode_payload(bytes: &[u8]) -> Option<Map<String, Value>> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    let value: Value = serde_json::from_slice(bytes).ok()?;
    if deeper_than(&value, MAX_JSON_DEPTH) {
        return None;
    }
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `levels` arrays nested in the payload object (`{"x": [[...]]}`): `levels + 1` deep.
    /// Built without recursion; callers forget it, as dropping it would recurse.
    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        // Not `json!`, which would copy `v` by recursing through it.
        Value::Object(Map::from_iter([("x".to_string(), v)]))
    }

    #[test]
    fn the_depth_limit_is_what_serde_json_reads_back() {
        let text = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<Value>(&text(MAX_JSON_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(MAX_JSON_DEPTH + 1)).is_err());
        let at = nested(MAX_JSON_DEPTH - 1);
        let bytes = encode_payload(&at, &[]).unwrap();
        assert_eq!(decode_payload(&bytes).map(Value::Object), Some(at));
        assert!(matches!(
            encode_payload(&nested(MAX_JSON_DEPTH), &[]),
            Err(Error::InvalidPayload(_))
        ));
    }

    #[test]
    fn a_payload_built_far_deeper_is_refused_without_recursing() {
        let deep = nested(1_000_000);
        assert!(matches!(
            encode_payload(&deep, &[]),
            Err(Error::InvalidPayload(_))
        ));
        assert!(matches!(
            Filter::from_json(&deep),
            Err(Error::InvalidFilter(_))
        ));
        std::mem::forget(deep);
        let mut f = Filter::has("x");
        for _ in 0..1_000_000 {
            f = Filter::not(f);
        }
        assert!(matches!(f.check_depth(), Err(Error::InvalidFilter(_))));
        assert!(matches!(
            FieldIndex::new(&[]).eval(&f),
            Err(Error::InvalidFilter(_))
        ));
        std::mem::forget(f);
    }

    #[test]
    fn stored_bytes_beyond_the_limits_do_not_decode() {
        let big = format!(r#"{{"s": "{}"}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
        assert!(decode_payload(big.as_bytes()).is_none());
        let deep = format!(
            r#"{{"x": {}{}}}"#,
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(decode_payload(deep.as_bytes()).is_none());
        assert!(decode_payload(b"[1]").is_none());
        assert!(decode_payload(b"{\"a\": 1}").is_some());
    }
}
