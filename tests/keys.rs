//! String ids: an index created with `IdKind::Str` keeps each key bound to its vector
//! through reopens, crashes (log replay), checkpoints, deletes and re-inserts, compaction
//! and backup; read-only views see new keys; the wrong kind of write is a typed error.

mod common;

use common::copy_dir;
use hnswdb::serde_json::json;
use hnswdb::{Error, IdKind, Index, IndexOptions, Metric, limits::MAX_KEY_BYTES};

const DIM: usize = 4;

fn vector(i: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((i * 7 + j * 3) % 11) as f32)
        .collect()
}

fn rows(ids: impl IntoIterator<Item = u64>) -> Vec<f32> {
    ids.into_iter().flat_map(vector).collect()
}

fn keyed(dir: &std::path::Path) -> Index {
    Index::create(
        dir,
        &IndexOptions::new(DIM, Metric::L2).id_kind(IdKind::Str),
    )
    .unwrap()
}

fn key(i: u64) -> String {
    format!("doc-{i}")
}

/// Every key of `expected` resolves to a live id holding its vector, bound back to it.
fn assert_keys(index: &Index, expected: &[(String, Vec<f32>)]) {
    assert_eq!(index.len(), expected.len() as u64);
    for (k, v) in expected {
        let id = index
            .resolve_key(k)
            .unwrap()
            .unwrap_or_else(|| panic!("{k} is unbound"));
        assert_eq!(&index.get(id).unwrap(), v, "{k}");
        assert_eq!(index.key_of(id).unwrap().as_deref(), Some(k.as_str()));
    }
    let report = index.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn expected(ids: impl IntoIterator<Item = u64>) -> Vec<(String, Vec<f32>)> {
    ids.into_iter().map(|i| (key(i), vector(i))).collect()
}

#[test]
fn keys_survive_reopen_checkpoint_and_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = keyed(&dir);
    assert_eq!(index.id_kind(), IdKind::Str);
    assert_eq!(index.stats().unwrap().id_kind, IdKind::Str);
    let keys: Vec<String> = (0..20).map(key).collect();
    index.insert_keys(&keys[..10], &rows(0..10), None).unwrap();
    index.checkpoint().unwrap();
    // Not checkpointed: only the log holds these bindings.
    let payloads: Vec<_> = (10..20).map(|i| json!({"n": i})).collect();
    index
        .insert_keys(&keys[10..], &rows(10..20), Some(&payloads))
        .unwrap();
    assert_keys(&index, &expected(0..20));

    // A crash: the files as they are, reopened (the log replays the second batch).
    let crashed = tmp.path().join("crashed");
    copy_dir(&dir, &crashed);
    let reopened = Index::open(&crashed).unwrap();
    assert!(reopened.recovery().replayed > 0);
    assert_eq!(reopened.id_kind(), IdKind::Str);
    assert_keys(&reopened, &expected(0..20));
    let id = reopened.resolve_key("doc-12").unwrap().unwrap();
    assert_eq!(reopened.get_payload(id).unwrap(), Some(json!({"n": 12})));
    // Replaying again (a second crash before any checkpoint) is idempotent.
    let again = tmp.path().join("again");
    copy_dir(&crashed, &again);
    drop(reopened);
    assert_keys(&Index::open(&again).unwrap(), &expected(0..20));

    // A clean close and reopen reads them from the metadata.
    index.close().unwrap();
    assert_keys(&Index::open(&dir).unwrap(), &expected(0..20));
}

#[test]
fn delete_unbinds_and_a_deleted_key_can_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = keyed(&dir);
    let keys: Vec<String> = (0..6).map(key).collect();
    index.insert_keys(&keys, &rows(0..6), None).unwrap();
    let old = index.resolve_key("doc-2").unwrap().unwrap();
    assert_eq!(index.delete_keys(&["doc-2", "doc-3"], false).unwrap(), 2);
    assert_eq!(index.resolve_key("doc-2").unwrap(), None);
    assert_eq!(index.key_of(old).unwrap(), None);
    // An absent key deletes nothing, unless missing_ok.
    assert!(matches!(
        index.delete_keys(&["doc-4", "doc-2"], false),
        Err(Error::UnknownKey(k)) if k == "doc-2"
    ));
    assert!(index.resolve_key("doc-4").unwrap().is_some());
    // A key named twice is a typed error about that key (it said "id 4 is not in the
    // index", of a present key, until 2026-12-07), and deletes nothing.
    assert!(matches!(
        index.delete_keys(&["doc-4", "doc-4"], false),
        Err(Error::DuplicateKey(k)) if k == "doc-4"
    ));
    let id4 = index.resolve_key("doc-4").unwrap().unwrap();
    assert!(matches!(index.delete_batch(&[id4, id4]), Err(Error::DuplicateId(i)) if i == id4));
    assert!(index.resolve_key("doc-4").unwrap().is_some());
    assert_eq!(index.delete_keys(&["doc-4", "doc-2"], true).unwrap(), 1);
    // Re-inserted under a new id, with its new vector.
    index.insert_keys(&["doc-2"], &vector(42), None).unwrap();
    let new = index.resolve_key("doc-2").unwrap().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        index.keys_of(&[old, new, 0]).unwrap(),
        [None, Some("doc-2".to_string()), Some("doc-0".to_string())]
    );
    let mut want = expected([0, 1, 5]);
    want.push(("doc-2".into(), vector(42)));
    assert_keys(&index, &want);
    // Upsert: a bound key keeps its id, a new one gets one.
    index
        .upsert_keys(&["doc-2", "doc-9"], &rows([43, 9]), None)
        .unwrap();
    assert_eq!(index.resolve_key("doc-2").unwrap(), Some(new));
    want[3].1 = vector(43);
    want.push((key(9), vector(9)));
    assert_keys(&index, &want);
    // Deleting by the internal id (as a search answers it) unbinds the key too.
    let id9 = index.resolve_key("doc-9").unwrap().unwrap();
    index.delete(id9).unwrap();
    assert_eq!(index.resolve_key("doc-9").unwrap(), None);
    want.pop();
    assert_keys(&index, &want);

    // All of it through a crash (log replay) and through a checkpoint.
    let crashed = tmp.path().join("crashed");
    copy_dir(&dir, &crashed);
    assert_keys(&Index::open(&crashed).unwrap(), &want);
    index.checkpoint().unwrap();
    index.close().unwrap();
    assert_keys(&Index::open(&dir).unwrap(), &want);
}

#[test]
fn compaction_and_backup_carry_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let index = keyed(&dir);
    let keys: Vec<String> = (0..50).map(key).collect();
    let payloads: Vec<_> = (0..50).map(|i| json!({"n": i})).collect();
    index
        .insert_keys(&keys, &rows(0..50), Some(&payloads))
        .unwrap();
    let gone: Vec<String> = (0..50).step_by(3).map(key).collect();
    index.delete_keys(&gone, false).unwrap();
    let live: Vec<u64> = (0..50).filter(|i| i % 3 != 0).collect();

    let copy = tmp.path().join("backup");
    index.backup(&copy).unwrap();
    assert_keys(&Index::open(&copy).unwrap(), &expected(live.clone()));

    let (index, _) = index.compact().unwrap();
    assert_eq!(index.id_kind(), IdKind::Str);
    assert_keys(&index, &expected(live.clone()));
    for &i in &live {
        let id = index.resolve_key(&key(i)).unwrap().unwrap();
        assert_eq!(index.get_payload(id).unwrap(), Some(json!({"n": i})));
    }
    // New keys after the compaction get ids of their own.
    index.insert_keys(&["new"], &vector(99), None).unwrap();
    let mut want = expected(live);
    want.push(("new".into(), vector(99)));
    assert_keys(&index, &want);
}

#[test]
fn a_read_only_view_sees_new_keys_after_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let writer = keyed(&dir);
    writer
        .insert_keys(&["a", "b"], &rows([1, 2]), None)
        .unwrap();
    writer.checkpoint().unwrap();
    let view = Index::open_read_only(&dir).unwrap();
    assert_eq!(view.id_kind(), IdKind::Str);
    assert!(view.resolve_key("b").unwrap().is_some());
    // Logged only: the view replays the log tail.
    writer.insert_keys(&["c"], &vector(3), None).unwrap();
    writer.delete_keys(&["a"], false).unwrap();
    assert_eq!(view.resolve_key("c").unwrap(), None);
    view.refresh().unwrap();
    let c = view.resolve_key("c").unwrap().unwrap();
    assert_eq!(view.get(c).unwrap(), vector(3));
    assert_eq!(view.key_of(c).unwrap().as_deref(), Some("c"));
    assert_eq!(view.resolve_key("a").unwrap(), None);
    // And after the writer checkpoints (the view reopens).
    writer.insert_keys(&["d"], &vector(4), None).unwrap();
    writer.checkpoint().unwrap();
    view.refresh().unwrap();
    assert!(view.resolve_key("d").unwrap().is_some());
    assert!(matches!(
        view.insert_keys(&["e"], &vector(5), None),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn the_wrong_kind_of_id_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let keyed = keyed(&tmp.path().join("str"));
    assert!(matches!(keyed.insert(1, &vector(1)), Err(Error::IdKind(_))));
    assert!(matches!(
        keyed.upsert_batch(&[1], &vector(1)),
        Err(Error::IdKind(_))
    ));
    assert!(matches!(
        keyed.insert_batch_with_payloads(&[1], &vector(1), &[json!({})], 1),
        Err(Error::IdKind(_))
    ));
    assert!(keyed.is_empty());

    let ints = Index::create(tmp.path().join("int"), &IndexOptions::new(DIM, Metric::L2)).unwrap();
    assert_eq!(ints.id_kind(), IdKind::Int);
    ints.insert(1, &vector(1)).unwrap();
    assert!(matches!(
        ints.insert_keys(&["a"], &vector(1), None),
        Err(Error::IdKind(_))
    ));
    assert!(matches!(
        ints.upsert_keys(&["a"], &vector(1), None),
        Err(Error::IdKind(_))
    ));
    assert!(matches!(
        ints.delete_keys(&["a"], true),
        Err(Error::IdKind(_))
    ));
    assert!(matches!(ints.resolve_key("a"), Err(Error::IdKind(_))));
    assert!(matches!(ints.key_of(1), Err(Error::IdKind(_))));
    assert_eq!(ints.len(), 1);
}

#[test]
fn bad_keys_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let index = keyed(&tmp.path().join("idx"));
    index.insert_keys(&["a"], &vector(1), None).unwrap();
    let long = "x".repeat(MAX_KEY_BYTES + 1);
    for bad in [vec!["b", ""], vec!["b", long.as_str()]] {
        let r = index.insert_keys(&bad, &rows([2, 3]), None);
        assert!(matches!(r, Err(Error::InvalidKey(_))), "{r:?}");
        let r = index.upsert_keys(&bad, &rows([2, 3]), None);
        assert!(matches!(r, Err(Error::InvalidKey(_))), "{r:?}");
    }
    // The longest key is fine, in any script.
    let longest = "é".repeat(MAX_KEY_BYTES / 2);
    index.insert_keys(&[&longest], &vector(4), None).unwrap();
    // Present, or twice in one batch.
    assert!(matches!(
        index.insert_keys(&["c", "a"], &rows([2, 3]), None),
        Err(Error::DuplicateKey(k)) if k == "a"
    ));
    assert!(matches!(
        index.upsert_keys(&["c", "c"], &rows([2, 3]), None),
        Err(Error::DuplicateKey(k)) if k == "c"
    ));
    assert!(matches!(
        index.insert_keys(&["c"], &vector(2)[..2], None),
        Err(Error::DimensionMismatch { .. })
    ));
    assert_eq!(index.len(), 2);
    assert_eq!(index.resolve_key("c").unwrap(), None);
    assert!(index.resolve_key(&longest).unwrap().is_some());
    let report = index.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
