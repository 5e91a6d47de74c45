//! The filter expression parser and evaluator: arbitrary text parsed as a filter
//! (`Filter::parse`, the CLI's `--filter`) and evaluated against a small field index.
//! Never a panic or a stack overflow; a filter is refused only with `InvalidFilter`; what
//! evaluates admits only live slots, and its negation admits exactly the others.
#![no_main]

use hnswdb::filter::{FieldIndex, Filter};
use hnswdb::serde_json::json;
use hnswdb::{Error, FieldKind, FieldSpec};
use libfuzzer_sys::fuzz_target;

fn index() -> FieldIndex {
    let specs = [
        FieldSpec::new("a", FieldKind::Integer),
        FieldSpec::new("b", FieldKind::Float),
        FieldSpec::new("c", FieldKind::Keyword),
        FieldSpec::new("d", FieldKind::Bool),
    ];
    let mut index = FieldIndex::new(&specs);
    let payloads = [
        json!({"a": 3, "b": 3, "c": "x", "d": true}),
        json!({"a": i64::MAX, "b": u64::MAX, "c": ["x", "y"]}),
        json!({"a": [i64::MIN, 0], "b": -0.0, "d": false}),
        json!({"b": 2.5, "c": ""}),
        json!({}),
    ];
    for (slot, p) in payloads.iter().enumerate() {
        index.add(slot as u32, p.as_object());
    }
    index.add(5, None);
    index
}

/// JSON tokens of filters, so that most token programs are near-filters (random bytes
/// almost never are): operators, the fields, and numbers at the edges of the semantics.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"a\"",
    "\"b\"",
    "\"c\"",
    "\"d\"",
    "\"$and\"",
    "\"$or\"",
    "\"$not\"",
    "\"$eq\"",
    "\"$ne\"",
    "\"$gt\"",
    "\"$gte\"",
    "\"$lt\"",
    "\"$lte\"",
    "\"$in\"",
    "\"$nin\"",
    "\"$exists\"",
    "3",
    "3.0",
    "-0.0",
    "2.5",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "9.223372036854775807e18",
    "1e300",
    "-1e300",
    "true",
    "false",
    "null",
    "\"x\"",
    "\"\"",
];

/// Parses `text` and checks what the filter does on the index.
fn exercise(text: &str) {
    let filter = match Filter::parse(text) {
        Ok(f) => f,
        Err(Error::InvalidFilter(_)) => return,
        Err(e) => panic!("parse refused with {e}"),
    };
    filter
        .check_depth()
        .expect("a parsed filter is within the depth limit");
    let index = index();
    match index.eval(&filter) {
        Ok(admitted) => {
            assert!(admitted.is_subset(index.live()));
            let cached = index
                .eval_cached(&filter, None)
                .expect("evaluated once already");
            assert_eq!(*cached, admitted);
            if let Ok(rest) = index.eval(&Filter::not(filter)) {
                assert_eq!(rest, index.live() - &admitted);
            }
        }
        Err(Error::InvalidFilter(_)) => {}
        Err(e) => panic!("eval refused with {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exercise(text);
    }
    let program: String = data
        .iter()
        .map(|&b| TOKENS[usize::from(b) % TOKENS.len()])
        .collect();
    exercise(&program);
});
