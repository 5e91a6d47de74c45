//! Model-based test: random operation sequences run against the index and against a
//! reference model (a HashMap of vectors + brute force). Every answer is compared after
//! every step and after every reopen.

use std::collections::HashMap;

use hnswdb::serde_json::{Value, json};
use hnswdb::{
    Durability, Error, FieldKind, FieldSpec, Filter, Index, IndexOptions, Metric, OpenOptions,
    Plan, Query, Storage,
};
use proptest::prelude::*;

const DIM: usize = 6;
const IDS: u64 = 40;

#[derive(Clone, Debug)]
enum Step {
    Insert(u64, Vec<f32>),
    InsertBatch(Vec<(u64, Vec<f32>)>),
    Upsert(u64, Vec<f32>),
    UpsertBatch(Vec<(u64, Vec<f32>)>),
    Delete(u64),
    DeleteBatch(Vec<u64>),
    /// Insert with a payload `{"tag": t}` (None: no payload).
    InsertWithPayload(u64, Vec<f32>, Option<u8>),
    /// Upsert a batch with payloads (None: keep the id's).
    UpsertWithPayloads(Vec<(u64, Vec<f32>, Option<u8>)>),
    /// Set (Some) or remove (None) a payload.
    SetPayload(u64, Option<u8>),
    Search(Vec<f32>, usize),
    /// A search admitting tags up to the bound, forced to scan (exact) or walk.
    FilteredSearch(Vec<f32>, usize, u8, bool),
    Checkpoint,
    Consolidate,
    Reopen,
    /// Compact by relocation (`Index::relocate`): a new directory, renumbered slots.
    Relocate,
    /// Drop without a clean close: the files as a `kill -9` would leave them.
    Crash,
}

fn vector() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-10i32..10, DIM)
        .prop_map(|v| v.into_iter().map(|x| x as f32 * 0.5).collect())
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..IDS, vector()).prop_map(|(i, v)| Step::Insert(i, v)),
        2 => prop::collection::vec((0..IDS, vector()), 1..6).prop_map(Step::InsertBatch),
        2 => (0..IDS, vector()).prop_map(|(i, v)| Step::Upsert(i, v)),
        2 => prop::collection::vec((0..IDS, vector()), 1..6).prop_map(Step::UpsertBatch),
        3 => (0..IDS).prop_map(Step::Delete),
        1 => prop::collection::vec(0..IDS, 1..4).prop_map(Step::DeleteBatch),
        4 => (vector(), 1..8usize).prop_map(|(q, k)| Step::Search(q, k)),
        3 => (0..IDS, vector(), prop::option::of(0..4u8))
            .prop_map(|(i, v, t)| Step::InsertWithPayload(i, v, t)),
        1 => prop::collection::vec((0..IDS, vector(), prop::option::of(0..4u8)), 1..5)
            .prop_map(Step::UpsertWithPayloads),
        2 => (0..IDS, prop::option::of(0..4u8)).prop_map(|(i, t)| Step::SetPayload(i, t)),
        3 => (vector(), 1..8usize, 0..4u8, any::<bool>())
            .prop_map(|(q, k, t, walk)| Step::FilteredSearch(q, k, t, walk)),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Consolidate),
        1 => Just(Step::Reopen),
        1 => Just(Step::Relocate),
        1 => Just(Step::Crash),
    ]
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn open(dir: &std::path::Path) -> Index {
    Index::open_with(
        dir,
        &OpenOptions::default()
            .durability(Durability::None)
            .threads(2)
            .quantize_after(6),
    )
    .unwrap()
}

/// Copies the files of an open index: the state a `kill -9` would leave.
fn crash_copy(index: &Index, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for sub in ["", "wal"] {
        for f in std::fs::read_dir(index.path().join(sub)).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), to.join(sub).join(f.file_name())).unwrap();
            }
        }
    }
}

fn payload(tag: Option<u8>) -> Value {
    tag.map_or(Value::Null, |t| json!({"tag": t}))
}

fn check_all(
    index: &Index,
    model: &HashMap<u64, Vec<f32>>,
    tags: &HashMap<u64, u8>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(index.len(), model.len() as u64);
    for id in 0..IDS {
        match model.get(&id) {
            Some(v) => {
                prop_assert_eq!(&index.get(id).unwrap(), v);
                prop_assert_eq!(
                    index.get_payload(id).unwrap(),
                    tags.get(&id).map(|&t| json!({"tag": t}))
                );
            }
            None => prop_assert!(matches!(index.get(id), Err(Error::UnknownId(_)))),
        }
    }
    let mut ids = index.ids().unwrap();
    ids.sort_unstable();
    let mut expected: Vec<u64> = model.keys().copied().collect();
    expected.sort_unstable();
    prop_assert_eq!(ids, expected);
    Ok(())
}

fn run(steps: Vec<Step>, storage: Storage) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = tmp.path().join("idx");
    let opts = IndexOptions::new(DIM, Metric::L2)
        .storage(storage)
        .field(FieldSpec::new("tag", FieldKind::Integer))
        .m(4)
        .ef_construction(32)
        .durability(Durability::None)
        .threads(2)
        // Small enough that most sequences search on SQ8 codes, retrained as they grow.
        .quantize_after(6);
    let mut index = Some(Index::create(&dir, &opts).unwrap());
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    // The payload model: id -> tag, for the ids that have one.
    let mut tags: HashMap<u64, u8> = HashMap::new();
    let mut crashes = 0;
    for step in steps {
        let ix = index.as_ref().unwrap();
        match step {
            Step::Insert(id, v) => {
                let r = ix.insert(id, &v);
                match model.entry(id) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        prop_assert!(matches!(r, Err(Error::DuplicateId(d)) if d == id))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        prop_assert!(r.is_ok());
                        slot.insert(v);
                    }
                }
            }
            Step::InsertBatch(items) => {
                let ids: Vec<u64> = items.iter().map(|(i, _)| *i).collect();
                let flat: Vec<f32> = items.iter().flat_map(|(_, v)| v.clone()).collect();
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let ok = distinct.len() == ids.len() && ids.iter().all(|i| !model.contains_key(i));
                let r = ix.insert_batch(&ids, &flat);
                prop_assert_eq!(r.is_ok(), ok, "{:?}", r);
                if ok {
                    model.extend(items);
                }
            }
            Step::Upsert(id, v) => {
                ix.upsert(id, &v).unwrap();
                model.insert(id, v);
            }
            Step::UpsertBatch(items) => {
                let ids: Vec<u64> = items.iter().map(|(i, _)| *i).collect();
                let flat: Vec<f32> = items.iter().flat_map(|(_, v)| v.clone()).collect();
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let r = ix.upsert_batch(&ids, &flat);
                prop_assert_eq!(r.is_ok(), distinct.len() == ids.len(), "{:?}", r);
                if r.is_ok() {
                    model.extend(items);
                }
            }
            Step::Delete(id) => {
                let r = ix.delete(id);
                prop_assert_eq!(r.is_ok(), model.remove(&id).is_some());
                tags.remove(&id);
            }
            Step::InsertWithPayload(id, v, tag) => {
                let r = ix.insert_with_payload(id, &v, &payload(tag));
                match model.entry(id) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        prop_assert!(matches!(r, Err(Error::DuplicateId(d)) if d == id))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        // A null payload is none.
                        prop_assert!(r.is_ok(), "{:?}", r);
                        slot.insert(v);
                        if let Some(t) = tag {
                            tags.insert(id, t);
                        }
                    }
                }
            }
            Step::UpsertWithPayloads(items) => {
                let ids: Vec<u64> = items.iter().map(|(i, _, _)| *i).collect();
                let flat: Vec<f32> = items.iter().flat_map(|(_, v, _)| v.clone()).collect();
                let payloads: Vec<Value> = items.iter().map(|(_, _, t)| payload(*t)).collect();
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let r = ix.upsert_batch_with_payloads(&ids, &flat, &payloads, 2);
                prop_assert_eq!(r.is_ok(), distinct.len() == ids.len(), "{:?}", r);
                if r.is_ok() {
                    for (id, v, t) in items {
                        model.insert(id, v);
                        if let Some(t) = t {
                            tags.insert(id, t);
                        }
                    }
                }
            }
            Step::SetPayload(id, tag) => {
                let r = ix.set_payload(id, &payload(tag));
                prop_assert_eq!(r.is_ok(), model.contains_key(&id), "{:?}", r);
                if r.is_ok() {
                    match tag {
                        Some(t) => tags.insert(id, t),
                        None => tags.remove(&id),
                    };
                }
            }
            Step::FilteredSearch(q, k, bound, walk) => {
                let filter = Filter::lte("tag", bound);
                let plan = if walk { Plan::Walk } else { Plan::Scan };
                let hits = ix
                    .search_with(&q, &Query::new(k).ef(200).filter(&filter).force_plan(plan))
                    .unwrap();
                let mut exact: Vec<(f32, u64)> = model
                    .iter()
                    .filter(|(id, _)| tags.get(id).is_some_and(|&t| t <= bound))
                    .map(|(id, v)| (l2(&q, v), *id))
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                exact.truncate(k);
                // k answers whenever k match (a walk that finds fewer falls back to a
                // scan), each admitted and at its true distance; a scan is exact.
                prop_assert_eq!(hits.len(), exact.len());
                for h in &hits {
                    prop_assert!(tags.get(&h.id).is_some_and(|&t| t <= bound));
                    prop_assert!((l2(&q, &model[&h.id]) - h.distance).abs() < 1e-4);
                }
                if !walk {
                    for (h, e) in hits.iter().zip(&exact) {
                        prop_assert!((h.distance - e.0).abs() < 1e-4, "{:?} {:?}", hits, exact);
                    }
                }
            }
            Step::DeleteBatch(ids) => {
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let ok = distinct.len() == ids.len() && ids.iter().all(|i| model.contains_key(i));
                prop_assert_eq!(ix.delete_batch(&ids).is_ok(), ok);
                if ok {
                    ids.iter().for_each(|i| {
                        model.remove(i);
                        tags.remove(i);
                    });
                }
            }
            Step::Search(q, k) => {
                // ef above the id range: the search sees every reachable node, so it is
                // exact when every node is reachable; `consolidate` guarantees that.
                if ix.verify().unwrap().unreachable > 0 {
                    ix.consolidate().unwrap();
                    let after = ix.verify().unwrap();
                    prop_assert_eq!(after.unreachable, 0, "consolidate left nodes unreachable");
                }
                let hits = ix.search_ef(&q, k, 200).unwrap();
                let mut exact: Vec<(f32, u64)> =
                    model.iter().map(|(id, v)| (l2(&q, v), *id)).collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                exact.truncate(k);
                prop_assert_eq!(hits.len(), exact.len());
                for (h, e) in hits.iter().zip(&exact) {
                    // Ids may differ between equidistant vectors; distances may not.
                    prop_assert!(
                        (h.distance - e.0).abs() < 1e-4,
                        "hits {:?} exact {:?} verify {:?}",
                        hits,
                        exact,
                        ix.verify().unwrap().problems
                    );
                    prop_assert!((l2(&q, &model[&h.id]) - h.distance).abs() < 1e-4);
                }
            }
            Step::Checkpoint => ix.checkpoint().unwrap(),
            Step::Consolidate => ix.consolidate().unwrap(),
            Step::Reopen => {
                index.take().unwrap().close().unwrap();
                index = Some(open(&dir));
                let report = index.as_ref().unwrap().verify().unwrap();
                prop_assert!(report.is_ok(), "{:?}", report.problems);
            }
            Step::Relocate => {
                let (relocated, report) = index.take().unwrap().relocate().unwrap();
                prop_assert_eq!(report.live, model.len() as u64);
                let stats = relocated.stats().unwrap();
                prop_assert_eq!(stats.high_water as u64, stats.len);
                index = Some(relocated);
                let report = index.as_ref().unwrap().verify().unwrap();
                prop_assert!(report.is_ok(), "{:?}", report.problems);
            }
            Step::Crash => {
                crashes += 1;
                let copy = tmp.path().join(format!("crash{crashes}"));
                crash_copy(ix, &copy);
                index = Some(open(&copy));
                dir = copy;
                let report = index.as_ref().unwrap().verify().unwrap();
                prop_assert!(report.is_ok(), "{:?}", report.problems);
            }
        }
        check_all(index.as_ref().unwrap(), &model, &tags)?;
    }
    let report = index.as_ref().unwrap().verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_the_model(steps in prop::collection::vec(step(), 1..80)) {
        run(steps, Storage::F32)?;
    }
}

/// A sequence CI shrank to (stop 32): six vectors, the sixth switching routing to SQ8
/// codes, and a search at k 1 that must still find the exact nearest.
#[test]
fn the_first_search_on_fresh_codes_is_exact() {
    let steps = vec![
        Step::Upsert(0, vec![-5.0, 1.0, -1.0, -1.0, 0.0, 0.0]),
        Step::InsertBatch(vec![
            (1, vec![1.5, 0.0, 0.0, 3.0, 0.0, 0.0]),
            (2, vec![0.0, 0.0, 0.0, 0.0, 0.0, 2.5]),
        ]),
        Step::UpsertBatch(vec![
            (0, vec![3.5, 0.0, 0.0, 0.0, 0.0, 0.0]),
            (1, vec![0.0, 0.0, 1.0, -1.5, 0.0, -1.5]),
            (3, vec![0.0, -2.0, 0.0, 0.0, -0.5, 0.0]),
        ]),
        Step::UpsertBatch(vec![(0, vec![0.0, 2.0, -2.0, 3.5, -1.5, -2.5])]),
        Step::Insert(4, vec![3.5, 2.0, -2.0, -0.5, 1.5, 2.5]),
        Step::Upsert(5, vec![0.0, 0.0, 0.0, 2.5, 0.0, 2.5]),
        Step::Search(vec![-1.5, 3.0, -4.0, 1.5, 3.0, 0.5], 1),
    ];
    run(steps, Storage::F32).unwrap();
}

proptest! {
    // The same model over an f16 index: the generated components (multiples of 0.5 up to
    // 5) are exact in f16, so every answer must still equal the model's; what this covers
    // is the f16 file through writes, replay, checkpoints, codes and reopens.
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn an_f16_index_matches_the_model(steps in prop::collection::vec(step(), 1..80)) {
        run(steps, Storage::F16)?;
    }
}

proptest! {
    // The same over a bf16 index: the generated components are exact in bf16 too (at most
    // four significant bits).
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_bf16_index_matches_the_model(steps in prop::collection::vec(step(), 1..80)) {
        run(steps, Storage::BF16)?;
    }
}

/// Steps on a string-id index: keys `k0`..`k9` (few, so that inserts meet present keys
/// and deletes meet absent ones).
#[derive(Clone, Debug)]
enum KeyStep {
    Insert(Vec<(u8, Vec<f32>)>),
    Upsert(Vec<(u8, Vec<f32>)>),
    Delete(Vec<u8>, bool),
    Search(Vec<f32>, usize),
    Checkpoint,
    Reopen,
    Crash,
}

fn key_step() -> impl Strategy<Value = KeyStep> {
    let batch = || prop::collection::vec((0..10u8, vector()), 1..4);
    prop_oneof![
        4 => batch().prop_map(KeyStep::Insert),
        3 => batch().prop_map(KeyStep::Upsert),
        3 => (prop::collection::vec(0..10u8, 1..3), any::<bool>())
            .prop_map(|(k, ok)| KeyStep::Delete(k, ok)),
        3 => (vector(), 1..6usize).prop_map(|(q, k)| KeyStep::Search(q, k)),
        1 => Just(KeyStep::Checkpoint),
        1 => Just(KeyStep::Reopen),
        1 => Just(KeyStep::Crash),
    ]
}

fn distinct<T: Ord + Clone>(items: &[T]) -> bool {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.len() == items.len()
}

/// Every key of the model resolves to its vector and back; no other key resolves.
fn check_keys(index: &Index, model: &HashMap<String, Vec<f32>>) -> Result<(), TestCaseError> {
    prop_assert_eq!(index.len(), model.len() as u64);
    for k in 0..10 {
        let key = format!("k{k}");
        match (index.resolve_key(&key).unwrap(), model.get(&key)) {
            (Some(id), Some(v)) => {
                prop_assert_eq!(&index.get(id).unwrap(), v);
                prop_assert_eq!(index.key_of(id).unwrap(), Some(key));
            }
            (None, None) => {}
            (found, want) => prop_assert!(false, "{key}: {found:?} vs {want:?}"),
        }
    }
    Ok(())
}

fn run_keyed(steps: Vec<KeyStep>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = tmp.path().join("idx");
    let opts = IndexOptions::new(DIM, Metric::L2)
        .id_kind(hnswdb::IdKind::Str)
        .m(4)
        .ef_construction(32)
        .durability(Durability::None)
        .threads(2)
        .quantize_after(6);
    let mut index = Some(Index::create(&dir, &opts).unwrap());
    let mut model: HashMap<String, Vec<f32>> = HashMap::new();
    let mut crashes = 0;
    let name = |k: &u8| format!("k{k}");
    for step in steps {
        let ix = index.as_ref().unwrap();
        match step {
            KeyStep::Insert(items) => {
                let keys: Vec<String> = items.iter().map(|(k, _)| name(k)).collect();
                let flat: Vec<f32> = items.iter().flat_map(|(_, v)| v.clone()).collect();
                let ok = distinct(&keys) && keys.iter().all(|k| !model.contains_key(k));
                let r = ix.insert_keys(&keys, &flat, None);
                prop_assert_eq!(r.is_ok(), ok, "{:?}", r);
                if !ok {
                    prop_assert!(matches!(r, Err(Error::DuplicateKey(_))));
                } else {
                    model.extend(keys.into_iter().zip(items.into_iter().map(|(_, v)| v)));
                }
            }
            KeyStep::Upsert(items) => {
                let keys: Vec<String> = items.iter().map(|(k, _)| name(k)).collect();
                let flat: Vec<f32> = items.iter().flat_map(|(_, v)| v.clone()).collect();
                let r = ix.upsert_keys(&keys, &flat, None);
                prop_assert_eq!(r.is_ok(), distinct(&keys), "{:?}", r);
                if r.is_ok() {
                    model.extend(keys.into_iter().zip(items.into_iter().map(|(_, v)| v)));
                }
            }
            KeyStep::Delete(keys, missing_ok) => {
                let keys: Vec<String> = keys.iter().map(name).collect();
                let mut unique = keys.clone();
                unique.sort();
                unique.dedup();
                let present = unique.iter().filter(|k| model.contains_key(*k)).count();
                let all = unique.len() == keys.len() && present == keys.len();
                match ix.delete_keys(&keys, missing_ok) {
                    Ok(n) => {
                        prop_assert!(missing_ok || all);
                        keys.iter().for_each(|k| drop(model.remove(k)));
                        prop_assert_eq!(n, present as u64);
                    }
                    Err(e) => {
                        prop_assert!(!missing_ok && !all, "{e}");
                        // Keys are checked in order: the first absent or repeated one.
                        let mut seen = std::collections::HashSet::new();
                        let first = keys
                            .iter()
                            .find(|k| !model.contains_key(*k) || !seen.insert(*k))
                            .unwrap();
                        match model.contains_key(first) {
                            true => {
                                prop_assert!(matches!(e, Error::DuplicateKey(ref k) if k == first))
                            }
                            false => {
                                prop_assert!(matches!(e, Error::UnknownKey(ref k) if k == first))
                            }
                        }
                    }
                }
            }
            KeyStep::Search(q, k) => {
                if ix.verify().unwrap().unreachable > 0 {
                    ix.consolidate().unwrap();
                }
                let hits = ix.search_ef(&q, k, 200).unwrap();
                let mut exact: Vec<f32> = model.values().map(|v| l2(&q, v)).collect();
                exact.sort_by(f32::total_cmp);
                exact.truncate(k);
                prop_assert_eq!(hits.len(), exact.len());
                for (h, e) in hits.iter().zip(&exact) {
                    prop_assert!((h.distance - e).abs() < 1e-4, "{:?} {:?}", hits, exact);
                    let key = ix.key_of(h.id).unwrap().unwrap();
                    prop_assert!((l2(&q, &model[&key]) - h.distance).abs() < 1e-4);
                }
            }
            KeyStep::Checkpoint => ix.checkpoint().unwrap(),
            KeyStep::Reopen => {
                index.take().unwrap().close().unwrap();
                index = Some(open(&dir));
            }
            KeyStep::Crash => {
                crashes += 1;
                let copy = tmp.path().join(format!("crash{crashes}"));
                crash_copy(ix, &copy);
                index = Some(open(&copy));
                dir = copy;
            }
        }
        let ix = index.as_ref().unwrap();
        check_keys(ix, &model)?;
        let report = ix.verify().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report.problems);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_string_id_index_matches_the_model(steps in prop::collection::vec(key_step(), 1..60)) {
        run_keyed(steps)?;
    }
}
