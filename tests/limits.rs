//! Every limit on a caller's size (`hnswdb::limits`, docs/limits.md), through the public
//! API: random sizes around each limit pass exactly when within it, and otherwise give
//! the documented typed error and change nothing; what is accepted reads back, also
//! after a reopen; sizes far beyond (k = usize::MAX, a payload a million levels deep) are
//! errors, never an abort.

use hnswdb::limits::{
    MAX_BATCH, MAX_EF, MAX_FIELD_NAME, MAX_FIELDS, MAX_JSON_DEPTH, MAX_K, MAX_PAYLOAD_BYTES,
};
use hnswdb::serde_json::{Map, Value, json};
use hnswdb::{Error, FieldKind, FieldSpec, Filter, Index, IndexOptions, Metric, Query};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const DIM: usize = 3;

fn small_index(dir: &std::path::Path) -> Index {
    let options = IndexOptions::new(DIM, Metric::L2)
        .threads(1)
        .field(FieldSpec::new("n", FieldKind::Integer));
    let index = Index::create(dir, &options).unwrap();
    let ids: Vec<u64> = (0..20).collect();
    let vectors: Vec<f32> = (0..20 * DIM).map(|i| i as f32).collect();
    let payloads: Vec<Value> = (0..20).map(|i| json!({ "n": i })).collect();
    index
        .insert_batch_with_payloads(&ids, &vectors, &payloads, 1)
        .unwrap();
    index
}

/// Sizes at, beside and far beyond `limit`.
fn around(limit: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..3).prop_map(move |d| limit - d),
        (1usize..3).prop_map(move |d| limit + d),
        Just(usize::MAX),
        any::<usize>(),
    ]
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Whether a result is what the limit says: Ok within it, else `InvalidOption`.
fn obeys<T: std::fmt::Debug>(within: bool, got: hnswdb::Result<T>) -> Result<(), TestCaseError> {
    match got {
        Ok(_) => prop_assert!(within, "accepted beyond the limit"),
        Err(Error::InvalidOption(_)) => prop_assert!(!within, "refused within the limit"),
        Err(e) => prop_assert!(false, "unexpected error {e}"),
    }
    Ok(())
}

#[test]
fn k_offset_and_ef_are_checked_at_every_search_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let index = small_index(tmp.path());
    let q = [1.0f32; DIM];
    let batch = [1.0f32; 2 * DIM];
    let f = Filter::gte("n", 0);
    let sizes = (
        around(MAX_K),
        prop_oneof![Just(0usize), around(MAX_K)],
        prop_oneof![Just(16usize), around(MAX_EF)],
    );
    runner(64)
        .run(&sizes, |(k, offset, ef)| {
            let k_ok = k <= MAX_K;
            let ef_ok = ef <= MAX_EF;
            let both = k_ok && ef_ok;
            obeys(both, index.search_ef(&q, k, ef))?;
            obeys(both, index.search_counted(&q, k, ef))?;
            obeys(both, index.search_filtered(&q, k, ef, |_| true))?;
            obeys(both, index.search_batch(&batch, k, ef))?;
            obeys(k_ok, index.search_exact(&q, k))?;
            obeys(k_ok, index.search(&q, k))?;
            let paged = k as u128 + offset as u128 <= MAX_K as u128 && ef_ok;
            let query = Query::new(k).offset(offset).ef(ef).filter(&f);
            obeys(paged, index.search_with(&q, &query))?;
            obeys(paged, index.search_batch_with(&batch, &query, 2))?;
            obeys(paged, index.explain(&query))?;
            Ok(())
        })
        .unwrap();
    // tune asks for k + 1 per sampled vector; within the limit it is refused only for
    // want of vectors (20 here), never by an allocation.
    for k in [MAX_K, MAX_K + 1, usize::MAX, 0] {
        assert!(matches!(index.tune(0.9, k), Err(Error::InvalidOption(_))));
    }
    assert!(index.tune(0.5, 5).is_ok());
    // The default ef is checked where it is used: a huge set_ef makes searches refuse.
    index.set_ef(usize::MAX);
    assert!(matches!(index.search(&q, 3), Err(Error::InvalidOption(_))));
    assert!(matches!(
        index.search_within(&q, 1.0, None),
        Err(Error::InvalidOption(_))
    ));
    index.set_ef(64);
    assert_eq!(index.search(&q, 3).unwrap().len(), 3);
    // A NaN radius admits nothing: an error, through a query as through search_within.
    let nan = Query::new(3).max_distance(f32::NAN);
    assert!(matches!(
        index.search_with(&q, &nan),
        Err(Error::InvalidOption(_))
    ));
    assert!(matches!(
        index.search_within(&q, f32::NAN, None),
        Err(Error::InvalidOption(_))
    ));
    for huge in [MAX_EF + 1, usize::MAX] {
        let tmp = tempfile::tempdir().unwrap();
        let options = IndexOptions::new(DIM, Metric::L2).ef_search(huge);
        assert!(matches!(
            Index::create(tmp.path(), &options),
            Err(Error::InvalidOption(_))
        ));
    }
}

#[test]
fn oversized_batches_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let index = small_index(tmp.path());
    let ids = vec![1000u64; MAX_BATCH + 1];
    for got in [
        index.insert_batch(&ids, &[]),
        index.upsert_batch(&ids, &[]),
        index.delete_batch(&ids),
        index.set_payloads(&ids, &[]),
    ] {
        assert!(matches!(got, Err(Error::InvalidOption(_))), "{got:?}");
    }
    // (The 512 MiB cap on one set_payloads is checked by a unit test of its check:
    // reaching it here would serialise half a gigabyte in a debug build.)
    assert_eq!(index.len(), 20);
    assert_eq!(index.get_payload(3).unwrap(), Some(json!({ "n": 3 })));
}

/// `{"x": [[...1...]]}`, `depth` deep, built without recursion (not with `json!`, which
/// recurses through its arguments).
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 1..depth {
        v = Value::Array(vec![v]);
    }
    Value::Object(Map::from_iter([("x".to_string(), v)]))
}

#[test]
fn payload_depth_and_size_are_the_same_limits_on_write_and_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = small_index(&dir);
    // The run's closure is `Fn`: what it records goes through cells.
    let accepted = std::cell::RefCell::new(Vec::new());
    let next = std::cell::Cell::new(0u64);
    let depth = (0usize..4)
        .prop_flat_map(|d| prop_oneof![Just(MAX_JSON_DEPTH - d), Just(MAX_JSON_DEPTH + 1 + d)]);
    runner(16)
        .run(&depth, |depth| {
            let payload = nested(depth);
            let id = next.get();
            next.set((id + 1) % 20);
            match index.set_payload(id, &payload) {
                Ok(()) => {
                    prop_assert!(depth <= MAX_JSON_DEPTH);
                    prop_assert_eq!(index.get_payload(id).unwrap(), Some(payload.clone()));
                    accepted.borrow_mut().push((id, payload));
                }
                Err(Error::InvalidPayload(_)) => prop_assert!(depth > MAX_JSON_DEPTH),
                Err(e) => prop_assert!(false, "{e}"),
            }
            Ok(())
        })
        .unwrap();
    // Serialised as {"s":"..."}: 8 bytes around the string.
    let size = (0usize..4).prop_flat_map(|d| {
        prop_oneof![Just(MAX_PAYLOAD_BYTES - d), Just(MAX_PAYLOAD_BYTES + 1 + d)]
    });
    runner(8)
        .run(&size, |bytes| {
            let payload = json!({ "s": "y".repeat(bytes - 8) });
            let got = index.insert_with_payload(100, &[0.5; DIM], &payload);
            match got {
                Ok(()) => {
                    prop_assert!(bytes <= MAX_PAYLOAD_BYTES);
                    index.delete(100).unwrap();
                }
                Err(Error::InvalidPayload(_)) => prop_assert!(bytes > MAX_PAYLOAD_BYTES),
                Err(e) => prop_assert!(false, "{e}"),
            }
            Ok(())
        })
        .unwrap();
    // Far beyond: refused without recursing (the value itself is leaked: dropping it
    // would recurse a million levels).
    let deep = nested(1_000_000);
    assert!(matches!(
        index.set_payload(1, &deep),
        Err(Error::InvalidPayload(_))
    ));
    assert!(matches!(
        index.insert_with_payload(100, &[0.5; DIM], &deep),
        Err(Error::InvalidPayload(_))
    ));
    std::mem::forget(deep);
    assert!(!index.contains(100).unwrap());
    // What was accepted reads back from the log and then from a checkpoint.
    index.close().unwrap();
    let index = Index::open(&dir).unwrap();
    let accepted = accepted.into_inner();
    let last = |id| {
        accepted
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, p)| p)
    };
    for id in 0..20 {
        if let Some(p) = last(id) {
            assert_eq!(index.get_payload(id).unwrap().as_ref(), Some(p));
        }
    }
    index.checkpoint().unwrap();
    assert!(index.verify().unwrap().is_ok());
}

#[test]
fn field_names_counts_and_filter_depth_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let index = small_index(tmp.path());
    runner(16)
        .run(
            &around(MAX_FIELD_NAME).prop_map(|n| n.min(MAX_FIELD_NAME + 9)),
            |len| {
                let name = "f".repeat(len);
                let got = index.create_field_index(FieldSpec::new(name, FieldKind::Bool));
                obeys((1..=MAX_FIELD_NAME).contains(&len), got)
            },
        )
        .unwrap();
    assert!(matches!(
        index.create_field_index(FieldSpec::new("", FieldKind::Bool)),
        Err(Error::InvalidOption(_))
    ));
    // Up to MAX_FIELDS in all, then no more: declared at creation or added later.
    let fields = |n: usize| {
        (0..n)
            .map(|i| FieldSpec::new(format!("h{i}"), FieldKind::Keyword))
            .fold(IndexOptions::new(DIM, Metric::L2), IndexOptions::field)
    };
    let full_dir = tmp.path().join("full");
    assert!(matches!(
        Index::create(&full_dir, &fields(MAX_FIELDS + 1)),
        Err(Error::InvalidOption(_))
    ));
    let at_limit = fields(MAX_FIELDS);
    let index = Index::create(&full_dir, &at_limit).unwrap();
    assert!(matches!(
        index.create_field_index(FieldSpec::new("one_more", FieldKind::Bool)),
        Err(Error::InvalidOption(_))
    ));
    index.close().unwrap();
    assert_eq!(Index::open(&full_dir).unwrap().fields().len(), MAX_FIELDS);

    // A filter's JSON form nests at most MAX_JSON_DEPTH: {"$not": ... {"h0": "a"}}.
    let filter_text = |depth: usize| {
        format!(
            "{}{{\"h0\": \"a\"}}{}",
            "{\"$not\": ".repeat(depth - 1),
            "}".repeat(depth - 1)
        )
    };
    for depth in [1, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH] {
        assert!(Filter::parse(&filter_text(depth)).is_ok(), "{depth}");
    }
    for depth in [MAX_JSON_DEPTH + 1, 10_000] {
        assert!(matches!(
            Filter::parse(&filter_text(depth)),
            Err(Error::InvalidFilter(_))
        ));
    }
}

/// A stored payload nested deeper than the limit (as an earlier version could write)
/// or not JSON at all: reading it is `Corrupt`, and `verify` names it.
#[test]
fn verify_reports_a_stored_payload_that_does_not_decode() {
    const PAYLOADS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("payloads");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = small_index(&dir);
    index.checkpoint().unwrap();
    index.close().unwrap();
    let too_deep = format!(
        "{{\"x\": {}{}}}",
        "[".repeat(MAX_JSON_DEPTH),
        "]".repeat(MAX_JSON_DEPTH)
    );
    {
        let db = redb::Database::open(dir.join("meta.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(PAYLOADS).unwrap();
            t.insert(4, too_deep.as_bytes()).unwrap();
            t.insert(5, b"[1, 2]".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let index = Index::open(&dir).unwrap();
    assert!(matches!(index.get_payload(4), Err(Error::Corrupt { .. })));
    let report = index.verify().unwrap();
    assert!(!report.is_ok());
    for id in [4, 5] {
        let named = format!("payload of id {id} ");
        assert!(
            report.problems.iter().any(|p| p.contains(&named)),
            "{:?}",
            report.problems
        );
    }
}
