//! The graph alone, over page files in a temporary directory: searches against brute
//! force, deletes through tombstones and consolidation, and errors from the upper layers.

use std::path::Path;
use std::sync::Arc;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::search::WATCH_FIRST;
use super::*;
use crate::distance::Storage;
use crate::error::Error;
use crate::store::FileIdentity;

const DIM: usize = 16;
const M: usize = 8;

fn empty_graph(dir: &Path, capacity: usize) -> Graph {
    let identity = FileIdentity {
        dim: DIM as u32,
        metric: Metric::L2.code(),
        index_uid: 1,
    };
    let vectors = Vectors::create(&dir.join("vectors"), identity, capacity, Storage::F32).unwrap();
    let layer0 = Layer0::create(&dir.join("graph0"), identity, 2 * M, capacity).unwrap();
    let params = Params {
        m: M,
        m0: 2 * M,
        ef_construction: 64,
    };
    Graph::new(
        params,
        Distance::new(Metric::L2, Kernels::detect()),
        vectors,
        layer0,
    )
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A graph of `n` random vectors (node i labelled i), built on one thread.
fn built(dir: &Path, n: u32, rng: &mut StdRng) -> Graph {
    let graph = empty_graph(dir, n as usize);
    let level_mult = 1.0 / (M as f64).ln();
    for node in 0..n {
        let r: f64 = rng.random();
        let level = (-(1.0 - r).ln() * level_mult) as usize;
        graph
            .insert(node, level, &random_vector(rng), node as u64, false)
            .unwrap();
    }
    graph
}

/// Mean recall@k of `graph.search` against brute force over `queries` random queries.
fn recall(graph: &Graph, rng: &mut StdRng, queries: usize, k: usize, ef: usize) -> f64 {
    let mut found = 0;
    for _ in 0..queries {
        let q = random_vector(rng);
        let truth: HashSet<u32> = graph
            .brute_force(&q, k, |_| true)
            .iter()
            .map(|c| c.id)
            .collect();
        let got = graph.search(&q, k, ef).unwrap();
        assert!(
            got.windows(2).all(|w| w[0].d <= w[1].d),
            "sorted nearest first"
        );
        found += got.iter().filter(|c| truth.contains(&c.id)).count();
    }
    found as f64 / (queries * k) as f64
}

/// A re-rank of a beam scored on codes that err by up to `noise` (uniform): the `keep`
/// nearest by exact distance, and fewer exact distances than candidates.
#[test]
fn a_rerank_finds_the_exact_nearest_of_the_beam_reading_only_what_can_win() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let graph = built(tmp.path(), 400, &mut rng);
    for (noise, keep) in [(0.0f32, 5), (0.05, 5), (0.3, 10), (1.0, 1), (0.2, 400)] {
        let q = random_vector(&mut rng);
        let beam: Vec<Cand> = (0..400)
            .map(|id| Cand {
                d: graph.distance_to(&q, id) + rng.random_range(-1.0..=1.0) * noise,
                id,
            })
            .collect();
        let mut s = search::Scratch::new();
        let got = graph.rerank_all(&mut s, &q, beam, keep);
        let truth: Vec<u32> = graph
            .brute_force(&q, keep, |_| true)
            .iter()
            .map(|c| c.id)
            .collect();
        let ids: Vec<u32> = got.iter().take(keep).map(|c| c.id).collect();
        assert_eq!(ids, truth, "noise {noise}, keep {keep}");
        assert!(got.windows(2).all(|w| w[0].d <= w[1].d), "nearest first");
        assert!(
            got.iter().all(|c| c.d == graph.distance_to(&q, c.id)),
            "exact"
        );
        match keep < 400 {
            true => assert!(s.distances < 400, "noise {noise}: {} read", s.distances),
            false => assert_eq!(s.distances, 400),
        }
    }
}

fn assert_sound(graph: &Graph, high_water: u32) -> (usize, usize) {
    let mut problems = Vec::new();
    let counts = graph.check(high_water, false, &mut problems).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    counts
}

#[test]
fn search_finds_what_brute_force_finds() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let graph = built(dir.path(), 2000, &mut rng);
    let r = recall(&graph, &mut rng, 50, 10, 64);
    assert!(r >= 0.95, "recall@10 at ef 64 is {r}");
    assert_eq!(
        assert_sound(&graph, 2000),
        (0, 0),
        "(stale links, unreachable)"
    );
    assert!(graph.entry().is_some_and(|e| e.level >= 1));
}

#[test]
fn a_lists_watch_reads_ahead_until_a_check_finds_the_lists_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut graph = built(dir.path(), 500, &mut rng);
    let queries: Vec<Vec<f32>> = (0..=WATCH_FIRST).map(|_| random_vector(&mut rng)).collect();
    let plain: Vec<Vec<Cand>> = queries
        .iter()
        .map(|q| graph.search(q, 10, 32).unwrap())
        .collect();
    graph.walks = AtomicU64::new(0);
    graph.watch_lists(500);
    assert!(
        graph.lists_watch.away(),
        "a new watch reads ahead until checked"
    );
    let watched: Vec<Vec<Cand>> = queries
        .iter()
        .map(|q| graph.search(q, 10, 32).unwrap())
        .collect();
    // Reading ahead changes what is loaded when, never an answer.
    assert_eq!(watched, plain);
    // The check after walk WATCH_FIRST found the freshly written lists in the page cache.
    assert!(graph.layer0.file().resident(500));
    assert!(
        !graph.lists_watch.away(),
        "the check should find the lists in memory"
    );
}

#[test]
fn tombstones_route_but_never_answer_until_consolidated() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let n = 1500;
    let graph = built(dir.path(), n, &mut rng);
    let dead: Vec<u32> = (0..n).filter(|i| i % 3 == 0).collect();
    for &d in &dead {
        graph.tombstone(d);
    }
    for _ in 0..20 {
        let hits = graph.search(&random_vector(&mut rng), 10, 32).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(
            hits.iter().all(|c| c.id % 3 != 0),
            "a deleted node answered"
        );
    }
    graph.consolidate(&dead, n, 2).unwrap();
    graph.reconnect(n).unwrap();
    // Nothing links to the dead any more, and every live node is reachable again.
    assert_eq!(
        assert_sound(&graph, n),
        (0, 0),
        "(stale links, unreachable)"
    );
    assert!(graph.entry().is_some_and(|e| graph.is_live(e.node)));
    let r = recall(&graph, &mut rng, 50, 10, 64);
    assert!(r >= 0.95, "recall@10 after consolidation is {r}");
}

#[test]
fn deleting_every_node_leaves_an_empty_graph() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let graph = built(dir.path(), 50, &mut rng);
    let all: Vec<u32> = (0..50).collect();
    all.iter().for_each(|&n| graph.tombstone(n));
    graph.consolidate(&all, 50, 1).unwrap();
    assert_eq!(graph.entry(), None);
    assert!(
        graph
            .search(&random_vector(&mut rng), 5, 16)
            .unwrap()
            .is_empty()
    );
}

/// Upper lists that cannot be read.
struct Unreadable;

impl UpperSource for Unreadable {
    fn lists(&self, _: u32) -> Result<UpperLists> {
        Err(Error::Meta("disk on fire".into()))
    }
    fn all(&self) -> Result<Vec<(u32, UpperLists)>> {
        Err(Error::Meta("disk on fire".into()))
    }
}

#[test]
fn unreadable_upper_layers_fail_searches_instead_of_cutting_links() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let built = built(dir.path(), 300, &mut rng);
    let entry = built.entry().unwrap();
    assert!(entry.level > 0, "seeded to have an upper layer");
    drop(built);
    // Reopen the same files as `Index::open` does, with a source that fails.
    let mut graph = Graph::new(
        Params {
            m: M,
            m0: 2 * M,
            ef_construction: 64,
        },
        Distance::new(Metric::L2, Kernels::detect()),
        Vectors::open(&dir.path().join("vectors"), false, Storage::F32).unwrap(),
        Layer0::open(&dir.path().join("graph0"), false).unwrap(),
    );
    graph.restore(300, &[], &[], Arc::new(Unreadable), Some(entry));
    let q = random_vector(&mut rng);
    assert!(matches!(graph.search(&q, 5, 16), Err(Error::Meta(_))));
    assert!(graph.upper_count().is_err());
    let mut problems = Vec::new();
    assert!(graph.check(300, false, &mut problems).is_err());
}

/// Slots freed while their vectors were among the training's misfits take the baseline
/// down with them: a vector that misfits later still counts as new, and so towards a
/// retraining. Were the baseline left at the training's count, the misfits gone would
/// hide it (two left against a baseline of three: none new).
#[test]
fn freed_training_misfits_lower_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let identity = FileIdentity {
        dim: DIM as u32,
        metric: Metric::L2.code(),
        index_uid: 1,
    };
    let rows: Vec<Vec<f32>> = (0..100)
        .map(|i| vec![(i % 10) as f32 / 10.0; DIM])
        .collect();
    let sq8 = crate::distance::Sq8::train(DIM, rows.iter().map(|r| r.as_slice()));
    let codes = Codes::create(
        &dir.path().join("codes"),
        crate::store::CodeKind::Sq8,
        identity,
        16,
    )
    .unwrap();
    let kernels = (Metric::L2, Kernels::detect());
    let q = Quantized::new(Quantizer::Sq8(sq8), codes, 1, kernels, Some(&[1, 2, 3]), 3);
    assert!(q.quantizer.fits(&rows[0]));
    assert!(
        !q.quantizer.fits(&[1e6; DIM]),
        "far outside the trained range"
    );
    assert_eq!(q.new_misfits(), 0);
    q.forget_misfits(&[1, 2]);
    assert_eq!(
        (q.misfits(), q.trained_misfits(), q.new_misfits()),
        (1, 1, 0)
    );
    q.note_fit(5, &[1e6; DIM]);
    assert_eq!((q.misfits(), q.new_misfits()), (2, 1));
    // A slot that is not a misfit, freed, changes neither.
    q.forget_misfits(&[7]);
    assert_eq!((q.trained_misfits(), q.new_misfits()), (1, 1));
}

/// A node that only upper-layer links lead to is unreachable: a search descends
/// greedily to one node and walks layer 0 from there. `check` counted it reachable
/// (it followed links on every level), so `reconnect` left it, and upserts that moved
/// most vectors away left unmoved ones no search found at ef 3,000 of 4,000.
#[test]
fn a_node_only_upper_links_reach_is_unreachable_until_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(21);
    let graph = built(dir.path(), 300, &mut rng);
    let upper = |n: u32| graph.level_of(n).unwrap() > 0;
    let x = (0..300).find(|&n| upper(n) && Some(n) != graph.entry().map(|e| e.node));
    let x = x.expect("an upper node besides the entry point");
    for n in 0..300 {
        graph
            .update_links(n, 0, |list| {
                let before = list.len();
                list.retain(|&t| t != x);
                list.len() != before
            })
            .unwrap();
    }
    assert_eq!(assert_sound(&graph, 300).1, 1, "node {x} is unreachable");
    assert!(graph.reconnect(300).unwrap() >= 1);
    assert_eq!(assert_sound(&graph, 300).1, 0);
    let v = graph.vectors.vector(x).to_f32().to_vec();
    assert_eq!(graph.search(&v, 1, 64).unwrap()[0].id, x);
}
