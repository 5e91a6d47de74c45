//! Payload filtering: indexed fields (`fields`), filter expressions (`expr`) and the
//! field index that turns a filter into the bitmap of slots it admits (`bitmaps`). It
//! knows payloads and slots, nothing of the graph or the log: the index's planner
//! (`index/query.rs`) decides how a filtered search uses the bitmap.

mod bitmaps;
mod expr;
mod fields;

pub use bitmaps::FieldIndex;
pub use expr::{Bound, Filter};
pub use fields::{FieldKind, FieldSpec};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The largest payload, serialised: payloads ride in log records and metadata values,
/// and are meant for filterable attributes and small documents, not blobs.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// A payload checked and serialised for storage: a JSON object of at most
/// `MAX_PAYLOAD_BYTES`, whose indexed fields hold values of their kinds.
pub fn encode_payload(payload: &Value, specs: &[FieldSpec]) -> Result<Vec<u8>> {
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

/// A stored payload parsed back (`None` if the bytes are not a JSON object, which only
/// damage can cause: callers report it as corruption).
pub fn decode_payload(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}
