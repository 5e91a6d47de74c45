//! RaBitQ routing and the memory budget: recall, persistence, verify, what stays resident.

use hnswdb::{Index, IndexOptions, Metric, OpenOptions, Routing};
use hnswdb_datasets::{clustered, exact_knn, recall_at_k};

#[test]
fn rabitq_routing_answers_persists_and_verifies() {
    let (n, dim) = (6000, 64);
    let data = clustered(n + 100, dim, 30, 5);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    for metric in [Metric::L2, Metric::Cosine] {
        let _ = std::fs::remove_dir_all(&dir);
        let options = IndexOptions::new(dim, metric)
            .routing(Routing::RaBitQ)
            .quantize_after(1000)
            .threads(2);
        let index = Index::create(&dir, &options).unwrap();
        let ids: Vec<u64> = (0..n as u64).collect();
        // In chunks: the first checkpoints train the RaBitQ codes the later ones walk on.
        for chunk in ids.chunks(1000) {
            let rows = &data.data[chunk[0] as usize * dim..(chunk[0] as usize + chunk.len()) * dim];
            index.insert_batch(chunk, rows).unwrap();
            index.checkpoint().unwrap();
        }
        assert!(index.stats().unwrap().codes_generation > 0);
        assert_eq!(index.stats().unwrap().routing, Routing::RaBitQ);
        let mut base = data.clone();
        let queries = base.split_off(100);
        let truth = exact_knn(&base, &queries, 10, metric, 2);
        let recall = |index: &Index| {
            let mut total = 0.0;
            for (r, t) in truth.iter().enumerate() {
                let t: Vec<u64> = t.iter().map(|&x| x as u64).collect();
                let found: Vec<u64> = index
                    .search_ef(queries.row(r), 10, 96)
                    .unwrap()
                    .iter()
                    .map(|h| h.id)
                    .collect();
                total += recall_at_k(&found, &t, 10);
            }
            total / truth.len() as f64
        };
        let r = recall(&index);
        assert!(r >= 0.9, "{metric:?}: recall@10 {r}");
        assert!(index.verify().unwrap().is_ok());
        index.close().unwrap();
        // Reopened under a budget that holds the codes and lists but not the vectors:
        // the same answers, re-ranked with batched disk reads.
        let index = Index::open(&dir).unwrap();
        let before = recall(&index);
        drop(index);
        let stats_all = Index::open(&dir).unwrap().stats().unwrap();
        assert!(stats_all.residency.is_none());
        // 3 MiB: ~1.4 MiB of overhead (1 MiB of it working memory), the codes and lists
        // (0.9 MiB), not the vectors (1.9 MiB).
        let budget = OpenOptions::default().threads(2).memory_budget(3 << 20);
        let tight = Index::open_with(&dir, &budget).unwrap();
        let residency = tight.stats().unwrap().residency.unwrap();
        assert_eq!(residency.resident, ["codes", "layer0"], "{residency:?}");
        assert!(residency.disk_reads);
        assert!(residency.codes_bytes < residency.vector_bytes / 4);
        assert_eq!(recall(&tight), before);
        drop(tight);
        let roomy = Index::open_with(&dir, &OpenOptions::default().memory_budget(1 << 30)).unwrap();
        let residency = roomy.stats().unwrap().residency.unwrap();
        assert_eq!(residency.resident, ["codes", "layer0", "vectors"]);
        assert!(!residency.disk_reads);
    }
}

#[test]
fn writes_under_a_budget_are_answered_from_memory_until_synced() {
    // With the vectors on disk, re-ranks read synced slots directly from the disk; a slot
    // written (or reused) since the last sync must be read through memory, or a search
    // would see the bytes the disk still holds.
    let (n, dim) = (3000, 32);
    let data = clustered(n * 2, dim, 20, 9);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let options = IndexOptions::new(dim, Metric::L2)
        .routing(Routing::RaBitQ)
        .quantize_after(500);
    let index = Index::create(&dir, &options).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    index.insert_batch(&ids, &data.data[..n * dim]).unwrap();
    index.close().unwrap();
    // Just above the overhead (~1.4 MiB with 2 threads): the vectors stay on disk.
    let budget = OpenOptions::default().threads(2).memory_budget(1_600_000);
    let index = Index::open_with(&dir, &budget).unwrap();
    assert!(index.stats().unwrap().residency.unwrap().disk_reads);
    // Free half the slots (consolidate syncs), then fill them with new vectors, unsynced.
    let dead: Vec<u64> = (0..n as u64).step_by(2).collect();
    index.delete_batch(&dead).unwrap();
    index.consolidate().unwrap();
    let fresh: Vec<u64> = (0..n as u64 / 2).map(|i| 1_000_000 + i).collect();
    let rows = &data.data[n * dim..(n + fresh.len()) * dim];
    index.insert_batch(&fresh, rows).unwrap();
    let check = |index: &Index| {
        for (i, &id) in fresh.iter().enumerate().step_by(37) {
            let hit = &index
                .search_ef(&rows[i * dim..(i + 1) * dim], 1, 64)
                .unwrap()[0];
            assert_eq!(hit.id, id);
            assert!(hit.distance < 1e-3);
        }
        for id in (1..n as u64).step_by(2).step_by(49) {
            let v = index.get(id).unwrap();
            assert_eq!(index.search_ef(&v, 1, 64).unwrap()[0].id, id);
        }
    };
    check(&index);
    index.checkpoint().unwrap();
    check(&index);
}
