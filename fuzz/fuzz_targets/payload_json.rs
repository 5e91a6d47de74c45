//! Payload JSON, as a write takes it and as a read decodes it: arbitrary bytes decoded as
//! stored payloads, parsed JSON and values built deeper than any parser reads encoded as
//! payloads. Never a panic or a stack overflow; whatever `encode_payload` accepts,
//! `decode_payload` reads back unchanged (nothing is acknowledged that reads as
//! `Corrupt`), and both hold the same limits.
#![no_main]

use hnswdb::filter::{FieldIndex, decode_payload, encode_payload};
use hnswdb::serde_json::{Map, Value};
use hnswdb::{FieldKind, FieldSpec};
use libfuzzer_sys::fuzz_target;

fn specs() -> Vec<FieldSpec> {
    vec![
        FieldSpec::new("a", FieldKind::Integer),
        FieldSpec::new("b", FieldKind::Float),
        FieldSpec::new("c", FieldKind::Keyword),
        FieldSpec::new("d", FieldKind::Bool),
    ]
}

/// Encodes `v` and, if it is accepted, checks that it decodes to itself and that the
/// field index takes it and gives it back.
fn round_trip(v: &Value, specs: &[FieldSpec]) {
    let Ok(bytes) = encode_payload(v, specs) else {
        return;
    };
    let back = decode_payload(&bytes).expect("an accepted payload must read back");
    assert_eq!(&Value::Object(back.clone()), v);
    let mut index = FieldIndex::new(specs);
    index.add(0, Some(&back));
    index.remove(0, Some(&back));
    assert!(index.live().is_empty());
}

/// A value built from the bytes without a parser: `[`/`{` open an array/object (in an
/// object under the key `a`..`d` picked by the byte), `]` closes one, other bytes add
/// scalars. It can nest as deep as the input is long, past serde_json's limit.
fn build(data: &[u8]) -> Value {
    let mut stack: Vec<Value> = vec![Value::Object(Map::new())];
    let push = |stack: &mut Vec<Value>, v: Value, byte: u8| match stack.last_mut() {
        Some(Value::Array(items)) => items.push(v),
        Some(Value::Object(map)) => {
            map.insert(((b'a' + byte % 4) as char).to_string(), v);
        }
        _ => unreachable!("only containers are stacked"),
    };
    for &byte in data {
        match byte {
            b'[' => stack.push(Value::Array(Vec::new())),
            b'{' => stack.push(Value::Object(Map::new())),
            b']' if stack.len() > 1 => {
                let v = stack.pop().expect("more than one");
                push(&mut stack, v, byte);
            }
            _ => {
                let v = match byte % 5 {
                    0 => Value::from(i64::from(byte) - 128),
                    1 => Value::from(f64::from(byte) / 3.0),
                    2 => Value::from(u64::MAX - u64::from(byte)),
                    3 => Value::from(byte % 2 == 0),
                    _ => Value::from(char::from(byte).to_string()),
                };
                push(&mut stack, v, byte);
            }
        }
    }
    while stack.len() > 1 {
        let v = stack.pop().expect("more than one");
        push(&mut stack, v, 0);
    }
    stack.pop().expect("the root")
}

fuzz_target!(|data: &[u8]| {
    let specs = specs();
    // Stored bytes, as a read meets them.
    if let Some(map) = decode_payload(data) {
        let v = Value::Object(map);
        round_trip(&v, &specs);
        round_trip(&v, &[]);
    }
    // A caller's parsed JSON.
    if let Ok(v) = hnswdb::serde_json::from_slice::<Value>(data) {
        round_trip(&v, &specs);
        round_trip(&v, &[]);
    }
    // A caller's value built in code, as deep as the input.
    let v = build(data);
    round_trip(&v, &specs);
    round_trip(&v, &[]);
});
