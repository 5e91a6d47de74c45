//! Deletes on real data: QPS at recall@10 = 0.95 after deleting half of the index, against
//! a fresh build of the live half; then recall after re-inserting the deleted half (under
//! new ids) against the original build of the same vectors. Single-threaded queries.
//!
//! `HNSWDB_DATASET=DIR cargo bench --bench churn` with DIR holding base.fvecs, query.fvecs
//! and gt.ivecs (see scripts/make_debian.py); without it, a synthetic clustered set is used.

use std::path::PathBuf;
use std::time::Instant;

use hnswdb::{Durability, Index, IndexOptions, Metric};
use hnswdb_datasets::{Matrix, clustered, read_fvecs, read_ivecs, recall_at_k};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};

const EFS: [usize; 10] = [10, 12, 16, 20, 24, 32, 48, 64, 96, 128];
const REINSERTED: u64 = 1 << 40;

struct Point {
    ef: usize,
    recall: f64,
    qps: f64,
}

/// Recall and QPS at each ef. Each index gets an untimed pass first (pages mapped,
/// caches warm), then `ROUNDS` timed passes of which the median QPS counts, so that two
/// indexes measured one after the other are treated alike on a noisy machine.
fn sweep(index: &Index, queries: &Matrix, truth: &[Vec<u64>]) -> Vec<Point> {
    const ROUNDS: usize = 5;
    let pass = |ef: usize| -> (Vec<Vec<hnswdb::Neighbour>>, f64) {
        let start = Instant::now();
        let found: Vec<_> = (0..queries.rows)
            .map(|q| index.search_ef(queries.row(q), 10, ef).unwrap())
            .collect();
        (found, queries.rows as f64 / start.elapsed().as_secs_f64())
    };
    EFS.iter()
        .map(|&ef| {
            let (found, _) = pass(ef);
            let mut rates: Vec<f64> = (0..ROUNDS).map(|_| pass(ef).1).collect();
            rates.sort_by(f64::total_cmp);
            let recall = found
                .iter()
                .zip(truth)
                .map(|(f, t)| {
                    let ids: Vec<u64> = f.iter().map(|h| h.id % REINSERTED).collect();
                    recall_at_k(&ids, t, 10)
                })
                .sum::<f64>()
                / queries.rows as f64;
            Point {
                ef,
                recall,
                qps: rates[ROUNDS / 2],
            }
        })
        .collect()
}

fn qps_at(curve: &[Point], target: f64) -> Option<f64> {
    curve.windows(2).find_map(|w| {
        let (a, b) = (&w[0], &w[1]);
        (a.recall <= target && target <= b.recall).then(|| {
            let t = if b.recall > a.recall {
                (target - a.recall) / (b.recall - a.recall)
            } else {
                0.0
            };
            // Interpolate in log(QPS), as the curves are plotted.
            (a.qps.ln() + t * (b.qps.ln() - a.qps.ln())).exp()
        })
    })
}

fn print(name: &str, curve: &[Point]) {
    println!("{name}");
    for p in curve {
        println!(
            "  ef {:>4}  recall@10 {:.4}  {:>8.0} QPS",
            p.ef, p.recall, p.qps
        );
    }
}

fn build(dir: &std::path::Path, ids: &[u64], rows: &[f32], dim: usize, metric: Metric) -> Index {
    let index = Index::create(
        dir,
        &IndexOptions::new(dim, metric).durability(Durability::None),
    )
    .unwrap();
    for (chunk_ids, chunk) in ids.chunks(10_000).zip(rows.chunks(10_000 * dim)) {
        index.insert_batch(chunk_ids, chunk).unwrap();
    }
    index
}

fn main() {
    let dataset = std::env::var("HNSWDB_DATASET").map(PathBuf::from).ok();
    let (base, queries, metric, name) = match &dataset {
        Some(d) => (
            read_fvecs(&d.join("base.fvecs")).unwrap(),
            read_fvecs(&d.join("query.fvecs")).unwrap(),
            Metric::Cosine,
            d.display().to_string(),
        ),
        None => {
            let mut b = clustered(60_000 + 1000, 128, 150, 3);
            let q = b.split_off(1000);
            (b, q, Metric::L2, "synthetic clustered 60k x 128".into())
        }
    };
    let dim = base.dim;
    let n = base.rows as u64;
    println!(
        "dataset {name}: {} x {dim}, {} queries",
        base.rows, queries.rows
    );
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<u64> = (0..n).collect();
    let full = build(&tmp.path().join("full"), &all, &base.data, dim, metric);
    let full_truth: Vec<Vec<u64>> = match &dataset {
        Some(d) => read_ivecs(&d.join("gt.ivecs"))
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(u64::from).collect())
            .collect(),
        None => (0..queries.rows)
            .map(|q| {
                full.search_exact(queries.row(q), 10)
                    .unwrap()
                    .iter()
                    .map(|h| h.id)
                    .collect()
            })
            .collect(),
    };
    let original = sweep(&full, &queries, &full_truth);

    let mut order = all.clone();
    order.shuffle(&mut StdRng::seed_from_u64(42));
    let (dead, live) = order.split_at(order.len() / 2);
    let start = Instant::now();
    for chunk in dead.chunks(1000) {
        full.delete_batch(chunk).unwrap();
    }
    full.checkpoint().unwrap();
    println!(
        "deleted {} vectors in {:.1} s (consolidations included)",
        dead.len(),
        start.elapsed().as_secs_f64()
    );
    let live_rows: Vec<f32> = live
        .iter()
        .flat_map(|&i| base.row(i as usize).to_vec())
        .collect();
    let fresh_half = build(&tmp.path().join("half"), live, &live_rows, dim, metric);
    let half_truth: Vec<Vec<u64>> = (0..queries.rows)
        .map(|q| {
            fresh_half
                .search_exact(queries.row(q), 10)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect()
        })
        .collect();
    let deleted = sweep(&full, &queries, &half_truth);
    let fresh = sweep(&fresh_half, &queries, &half_truth);
    print("after deleting half (hnswdb, consolidated)", &deleted);
    print("fresh build of the live half", &fresh);
    let (a, b) = (qps_at(&deleted, 0.95), qps_at(&fresh, 0.95));
    println!(
        "(a) QPS at recall 0.95: after deletes {a:.0?}, fresh {b:.0?}, ratio {:.2?}",
        a.zip(b).map(|(a, b)| a / b)
    );

    let new_ids: Vec<u64> = dead.iter().map(|&i| i + REINSERTED).collect();
    let rows: Vec<f32> = dead
        .iter()
        .flat_map(|&i| base.row(i as usize).to_vec())
        .collect();
    for (ids, chunk) in new_ids.chunks(10_000).zip(rows.chunks(10_000 * dim)) {
        full.insert_batch(ids, chunk).unwrap();
    }
    let refilled = sweep(&full, &queries, &full_truth);
    print(
        "after re-inserting the deleted half under new ids",
        &refilled,
    );
    print("original build of the same vectors", &original);
    for (r, o) in refilled.iter().zip(&original) {
        println!(
            "(b) ef {:>4}: recall refilled {:.4} vs fresh {:.4} ({:+.4})",
            r.ef,
            r.recall,
            o.recall,
            r.recall - o.recall
        );
    }
}
