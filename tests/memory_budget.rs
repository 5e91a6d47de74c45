//! A memory budget bounds what the index holds in memory the kernel cannot reclaim: the
//! tiers it pins plus everything else it keeps (metadata cache, upper layers, search
//! working memory). Measured here as the growth of the process's anonymous memory (the
//! pinned pages of a read-only open are private copies, so they show there too) from
//! before the open to after a thousand searches. A budget smaller than what the index
//! keeps whatever is pinned is refused with a typed error.
//!
//! One test in its own binary: no other thread allocates while it measures.

use hnswdb::{Error, Index, IndexOptions, Metric, OpenOptions, Routing};
use hnswdb_datasets::clustered;

const MIB: u64 = 1 << 20;

/// The process's resident anonymous memory, bytes (`RssAnon` in /proc/self/status).
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_budget_bounds_the_memory_an_open_index_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = clustered(30_500, 128, 40, 7);
    let queries = data.split_off(500);
    let options = IndexOptions::new(128, Metric::Cosine)
        .m(8)
        .routing(Routing::RaBitQ);
    let index = Index::create(dir.path(), &options).unwrap();
    let ids: Vec<u64> = (0..data.rows as u64).collect();
    index.insert_batch(&ids, &data.data).unwrap();
    index.close().unwrap();

    let mut refused = false;
    // From below the floor to everything resident (the files take ~20 MiB).
    for budget_mib in [1, 2, 3, 4, 6, 32] {
        let budget = budget_mib * MIB;
        // Heap the build (or an earlier round) freed stays with the allocator, which
        // would hide this round's allocations: hand it back first.
        // SAFETY: malloc_trim only returns free heap memory to the system.
        unsafe { libc::malloc_trim(0) };
        let before = rss_anon();
        let opened = Index::open_with(
            dir.path(),
            &OpenOptions::default().read_only(true).memory_budget(budget),
        );
        let index = match opened {
            Err(Error::InvalidOption(why)) => {
                assert!(why.contains("memory budget"), "{why}");
                refused = true;
                continue;
            }
            other => other.unwrap(),
        };
        let residency = index.stats().unwrap().residency.unwrap();
        let pinned: u64 = residency
            .resident
            .iter()
            .map(|tier| match *tier {
                "codes" => residency.codes_bytes,
                "layer0" => residency.layer0_bytes,
                _ => residency.vector_bytes,
            })
            .sum();
        assert!(residency.overhead_bytes + pinned <= budget, "{residency:?}");
        for round in 0..2 {
            for q in 0..queries.rows {
                let hits = index.search_ef(queries.row(q), 10, 64).unwrap();
                assert_eq!(hits.len(), 10, "round {round}");
            }
        }
        let grown = rss_anon().saturating_sub(before);
        assert!(
            grown <= budget,
            "budget {budget_mib} MiB: the index holds {:.2} MiB ({residency:?})",
            grown as f64 / MIB as f64
        );
    }
    assert!(refused, "a 1 MiB budget was accepted");
}
