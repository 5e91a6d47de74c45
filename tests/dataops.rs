//! Data operations: search hits with payloads and vectors, count / ids_where / records,
//! deletes and payload updates by filter or by ids (each one logged write, replayed
//! exactly after a crash), and filters on payload keys no field index declares.

mod common;

use std::collections::BTreeSet;

use hnswdb::{
    Error, FieldKind, FieldSpec, Filter, Index, IndexOptions, Metric, Plan, Query, Record,
};
use serde_json::{Value, json};

const DIM: usize = 4;

/// Ids 0..n, vector i = (i, 0, 0, 0), payload {"group": i % 4, "tag": "t{i % 3}", "i": i}
/// ("group" is indexed, the others are not), and id n without a payload.
fn build(dir: &std::path::Path, n: u64) -> Index {
    let options = IndexOptions::new(DIM, Metric::L2)
        .m(8)
        .ef_construction(32)
        .threads(1)
        .field(FieldSpec::new("group", FieldKind::Integer));
    let index = Index::create(dir, &options).unwrap();
    let ids: Vec<u64> = (0..n).collect();
    let vectors: Vec<f32> = ids
        .iter()
        .flat_map(|&i| [i as f32, 0.0, 0.0, 0.0])
        .collect();
    let payloads: Vec<Value> = ids
        .iter()
        .map(|i| json!({"group": i % 4, "tag": format!("t{}", i % 3), "i": i}))
        .collect();
    index
        .insert_batch_with_payloads(&ids, &vectors, &payloads, 1)
        .unwrap();
    index.insert(n, &[n as f32, 0.0, 0.0, 0.0]).unwrap();
    index
}

fn ids(hits: &[hnswdb::Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

#[test]
fn hits_carry_payloads_and_vectors_and_too_few_is_a_shorter_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let index = build(tmp.path(), 40);
    let q = [2.2, 0.0, 0.0, 0.0];
    let plain = index.search_hits(&q, &Query::new(3)).unwrap();
    assert_eq!(ids(&plain), [2, 3, 1]);
    assert!(
        plain
            .iter()
            .all(|h| h.payload.is_none() && h.vector.is_none())
    );
    let full = index
        .search_hits(
            &q,
            &Query::new(3).include_payload(true).include_vector(true),
        )
        .unwrap();
    assert_eq!(ids(&full), [2, 3, 1]);
    assert_eq!(
        full[0].payload,
        Some(json!({"group": 2, "tag": "t2", "i": 2}))
    );
    assert_eq!(full[0].vector.as_deref(), Some(&[2.0, 0.0, 0.0, 0.0][..]));
    let near = index.search_with(&q, &Query::new(3)).unwrap();
    for (h, n) in full.iter().zip(&near) {
        assert_eq!((h.id, h.distance), (n.id, n.distance));
    }
    // The id without a payload has none; fewer matches than k is a shorter answer.
    let last = index
        .search_hits(&[40.0, 0.0, 0.0, 0.0], &Query::new(1).include_payload(true))
        .unwrap();
    assert_eq!((last[0].id, last[0].payload.clone()), (40, None));
    let tagged = Filter::eq("tag", "t0").and(Filter::lt("group", 1));
    let few = index
        .search_hits(&q, &Query::new(10).filter(&tagged).include_payload(true))
        .unwrap();
    let expected: Vec<u64> = (0..40).filter(|i| i % 3 == 0 && i % 4 == 0).collect();
    assert_eq!(
        ids(&few).iter().copied().collect::<BTreeSet<_>>(),
        expected.iter().copied().collect()
    );
    assert!(few.len() < 10);
    let batch = index
        .search_hits_batch(&[q, [39.8, 0.0, 0.0, 0.0]].concat(), &Query::new(2), 2)
        .unwrap();
    assert_eq!(
        batch.iter().map(|h| ids(h)).collect::<Vec<_>>(),
        [vec![2, 3], vec![40, 39]]
    );
}

#[test]
fn count_ids_where_and_records_on_declared_and_undeclared_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let index = build(tmp.path(), 40);
    assert_eq!(index.count(None).unwrap(), 41);
    let group = Filter::eq("group", 1);
    let tag = Filter::eq("tag", "t1");
    assert_eq!(index.count(Some(&group)).unwrap(), 10);
    assert_eq!(index.count(Some(&tag)).unwrap(), 13);
    let both = group.clone().and(tag.clone());
    let expected: Vec<u64> = (0..40).filter(|i| i % 4 == 1 && i % 3 == 1).collect();
    assert_eq!(index.ids_where(&both).unwrap(), expected);
    // `not` complements against every live id, those without a payload included.
    let not_tag = Filter::not(Filter::has("tag"));
    assert_eq!(index.ids_where(&not_tag).unwrap(), [40]);
    // The planner says which fields it scans for.
    let explained = index.explain(&Query::new(5).filter(&both)).unwrap();
    assert_eq!(explained.unindexed, ["tag"]);
    assert_eq!(explained.matching, expected.len() as u64);
    assert!(
        index
            .explain(&Query::new(5).filter(&group))
            .unwrap()
            .unindexed
            .is_empty()
    );
    // Records come in the order asked, absent ids left out.
    let records = index.records(&[7, 99, 2], true, false).unwrap();
    assert_eq!(
        records,
        [
            Record {
                id: 7,
                payload: Some(json!({"group": 3, "tag": "t1", "i": 7})),
                vector: None
            },
            Record {
                id: 2,
                payload: Some(json!({"group": 2, "tag": "t2", "i": 2})),
                vector: None
            },
        ]
    );
    let with_vector = index.records(&[40], true, true).unwrap();
    assert_eq!(with_vector[0].payload, None);
    assert_eq!(
        with_vector[0].vector.as_deref(),
        Some(&[40.0, 0.0, 0.0, 0.0][..])
    );
    // An undeclared key compares across types by value, and any type's values are kept.
    index
        .set_payload(40, &json!({"tag": 3, "n": [1.5, "x", true]}))
        .unwrap();
    assert_eq!(index.ids_where(&Filter::eq("tag", 3.0)).unwrap(), [40]);
    assert_eq!(index.ids_where(&Filter::gt("n", 1)).unwrap(), [40]);
    assert_eq!(index.ids_where(&Filter::eq("n", "x")).unwrap(), [40]);
    assert_eq!(index.ids_where(&Filter::eq("n", true)).unwrap(), [40]);
    // Bad filters on an undeclared key are still typed errors.
    for bad in [
        Filter::Eq("n".into(), Value::Null),
        Filter::range("n", Some(hnswdb::filter::Bound::new("a", true)), None),
        Filter::eq("group", "one"),
    ] {
        assert!(
            matches!(index.count(Some(&bad)), Err(Error::InvalidFilter(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn delete_where_and_missing_ok_deletes_survive_a_crash_and_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    // Large enough that these deletes (under 5%) leave consolidation, and so the
    // checkpoint, for later: the crash image holds them in the log only.
    let index = build(&dir, 400);
    let first = Filter::lt("i", 30).and(Filter::eq("tag", "t0"));
    assert_eq!(index.delete_where(&first).unwrap(), 10);
    assert_eq!(index.delete_where(&first).unwrap(), 0);
    assert_eq!(
        index
            .delete_where(&Filter::lt("i", 20).and(Filter::eq("group", 1)))
            .unwrap(),
        4
    );
    // An unknown or repeated id is skipped, and counted once.
    assert_eq!(index.delete_batch_missing_ok(&[2, 2, 0, 1000]).unwrap(), 1);
    assert_eq!(index.delete_batch_missing_ok(&[]).unwrap(), 0);
    // Without missing_ok an absent id deletes nothing.
    assert!(matches!(
        index.delete_batch(&[4, 3]),
        Err(Error::UnknownId(3))
    ));
    // A bad filter deletes nothing either.
    let bad = Filter::eq("group", "x");
    assert!(matches!(
        index.delete_where(&bad),
        Err(Error::InvalidFilter(_))
    ));
    let gone = |i: u64| i < 30 && (i.is_multiple_of(3) || (i < 20 && i % 4 == 1) || i == 2);
    let live: Vec<u64> = (0..=400).filter(|&i| !gone(i)).collect();
    let check = |ix: &Index| {
        assert_eq!(ix.ids().unwrap(), live);
        assert_eq!(ix.count(Some(&first)).unwrap(), 0);
        assert_eq!(ix.count(None).unwrap(), live.len() as u64);
        let hits = ix.search(&[0.0; DIM], 30).unwrap();
        assert!(hits.iter().all(|h| !gone(h.id)));
    };
    check(&index);
    let crashed = tmp.path().join("crash");
    common::copy_dir(&dir, &crashed);
    let reopened = Index::open(&crashed).unwrap();
    assert!(reopened.recovery().replayed >= 3);
    check(&reopened);
    index.close().unwrap();
    check(&Index::open(&dir).unwrap());
}

#[test]
fn merges_and_updates_by_filter_are_logged_as_their_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = build(&dir, 12);
    // Top-level merge: keys replaced or added, a null removes one; a null patch clears.
    index
        .merge_payloads(
            &[1, 2, 12],
            &[
                json!({"tag": null, "x": {"a": 1}}),
                Value::Null,
                json!({"new": true}),
            ],
        )
        .unwrap();
    // By filter: merge into every match, or replace.
    assert_eq!(
        index
            .update_where(&Filter::eq("tag", "t0"), &json!({"seen": 1}), false)
            .unwrap(),
        4
    );
    assert_eq!(
        index
            .update_where(&Filter::eq("group", 3), &json!({"group": 0}), true)
            .unwrap(),
        3
    );
    assert_eq!(
        index
            .update_where(&Filter::eq("nothing", 1), &json!({"a": 1}), false)
            .unwrap(),
        0
    );
    // All or nothing: an unknown id, a repeated id, a non-object patch, a value of the
    // wrong kind for an indexed field change nothing.
    let before = index
        .records(&(0..=12).collect::<Vec<_>>(), true, false)
        .unwrap();
    assert!(matches!(
        index.merge_payloads(&[4, 77], &[json!({"a": 1}), json!({})]),
        Err(Error::UnknownId(77))
    ));
    assert!(matches!(
        index.merge_payloads(&[4, 4], &[json!({}), json!({})]),
        Err(Error::DuplicateId(4))
    ));
    assert!(matches!(
        index.merge_payloads(&[4], &[json!([1])]),
        Err(Error::InvalidPayload(_))
    ));
    assert!(matches!(
        index.merge_payloads(&[4], &[]),
        Err(Error::InvalidPayload(_))
    ));
    assert!(matches!(
        index.update_where(&Filter::has("tag"), &json!({"group": "x"}), false),
        Err(Error::InvalidPayload(_))
    ));
    assert_eq!(
        index
            .records(&(0..=12).collect::<Vec<_>>(), true, false)
            .unwrap(),
        before
    );
    let check = |ix: &Index| {
        let p = |id| ix.get_payload(id).unwrap();
        assert_eq!(
            p(0),
            Some(json!({"group": 0, "tag": "t0", "seen": 1, "i": 0}))
        );
        assert_eq!(p(1), Some(json!({"group": 1, "x": {"a": 1}, "i": 1})));
        assert_eq!(p(2), None);
        assert_eq!(p(3), Some(json!({"group": 0})));
        assert_eq!(p(7), Some(json!({"group": 0})));
        assert_eq!(p(11), Some(json!({"group": 0})));
        assert_eq!(
            p(9),
            Some(json!({"group": 1, "tag": "t0", "seen": 1, "i": 9}))
        );
        assert_eq!(p(12), Some(json!({"new": true})));
        assert_eq!(
            ix.ids_where(&Filter::eq("group", 3)).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(ix.ids_where(&Filter::eq("seen", 1)).unwrap(), [0, 6, 9]);
    };
    check(&index);
    let crashed = tmp.path().join("crash");
    common::copy_dir(&dir, &crashed);
    check(&Index::open(&crashed).unwrap());
    index.close().unwrap();
    check(&Index::open(&dir).unwrap());
}

#[test]
fn a_field_index_changes_speed_not_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let index = build(&tmp.path().join("idx"), 60);
    let filters = [
        Filter::eq("tag", "t1"),
        Filter::is_in("tag", ["t0", "t2"]).and(Filter::gte("group", 2)),
        Filter::not(Filter::has("tag")).or(Filter::eq("group", 0)),
    ];
    let before: Vec<Vec<u64>> = filters
        .iter()
        .map(|f| index.ids_where(f).unwrap())
        .collect();
    index
        .create_field_index(FieldSpec::new("tag", FieldKind::Keyword))
        .unwrap();
    for (f, ids) in filters.iter().zip(&before) {
        assert!(
            index
                .explain(&Query::new(1).filter(f))
                .unwrap()
                .unindexed
                .is_empty()
        );
        assert_eq!(&index.ids_where(f).unwrap(), ids, "{f:?}");
        for plan in [Plan::Scan, Plan::Walk] {
            let hits = index
                .search_with(&[0.0; DIM], &Query::new(61).filter(f).force_plan(plan))
                .unwrap();
            let mut got: Vec<u64> = hits.iter().map(|h| h.id).collect();
            got.sort_unstable();
            assert_eq!(&got, ids);
        }
    }
}
