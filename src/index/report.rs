//! What the index reports: search hits, counts, recovery and verification results.

use crate::distance::Metric;

/// One search hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    /// The external id given at insert.
    pub id: u64,
    /// Its distance to the query under the index metric.
    pub distance: f32,
}

/// One search hit with what the query included of it (see `Query::include_payload`).
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The id.
    pub id: u64,
    /// Its distance to the query under the index metric.
    pub distance: f32,
    /// Its payload, when included and it has one.
    pub payload: Option<serde_json::Value>,
    /// Its stored vector (unit length under cosine), when included.
    pub vector: Option<Vec<f32>>,
}

impl Hit {
    /// The hit `n` with what was read of it.
    pub(super) fn of(
        n: Neighbour,
        payload: Option<serde_json::Value>,
        vector: Option<Vec<f32>>,
    ) -> Hit {
        Hit {
            id: n.id,
            distance: n.distance,
            payload,
            vector,
        }
    }
}

/// Counts and settings, for `stats` and monitoring.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Live vectors.
    pub len: u64,
    /// Slots the page files hold.
    pub capacity: usize,
    /// Slots ever allocated (live + tombstoned + free).
    pub high_water: u32,
    /// Slots freed by consolidated deletes and not yet reused.
    pub free_slots: usize,
    /// Of `free_slots`, those held back from reuse because a read-only view (in this
    /// process or another) still works on a generation in which they were in use
    /// (`docs/concurrency.md`).
    pub held_slots: usize,
    /// Deleted vectors still linked into the graph, awaiting consolidation.
    pub tombstones: usize,
    /// Nodes on layer 1 and above.
    pub upper_nodes: usize,
    /// Top level of the graph.
    pub max_level: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// M.
    pub m: usize,
    /// ef_construction.
    pub ef_construction: usize,
    /// Instruction set of the distance kernels in use.
    pub kernels: &'static str,
    /// Log bytes written since the last checkpoint.
    pub wal_bytes: u64,
    /// Generation `N` of the code file `codes.N` searches walk on; 0 when searches
    /// walk on exact vectors (no codes trained yet).
    pub codes_generation: u64,
    /// Vectors the codes do not fit, which walks score exactly (`docs/tuning.md`, "Drift").
    pub misfits: usize,
    /// What the walk runs on.
    pub routing: crate::Routing,
    /// How the full vectors are stored.
    pub storage: crate::Storage,
    /// What names the vectors: integer ids or string keys.
    pub id_kind: crate::IdKind,
    /// What the memory budget kept resident (`None`: no budget given).
    pub residency: Option<Residency>,
}

/// What a memory budget (`OpenOptions::memory_budget`) kept in memory, decided at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Residency {
    /// The budget, bytes.
    pub budget: u64,
    /// Of the budget, what the index keeps in memory whatever tiers are pinned (metadata
    /// cache, upper layers, search working memory): counted before any tier.
    pub overhead_bytes: u64,
    /// Bytes of the code file, of the layer-0 file and of the vector file.
    pub codes_bytes: u64,
    /// See `codes_bytes`.
    pub layer0_bytes: u64,
    /// See `codes_bytes`.
    pub vector_bytes: u64,
    /// The tiers kept resident, in order: "codes", "layer0", "vectors".
    pub resident: Vec<&'static str>,
    /// Whether they are pinned (`mlock`) or only pre-faulted (the process may not lock
    /// that much memory: the kernel may still evict them under pressure).
    pub pinned: bool,
    /// Whether re-ranks read vectors from disk in batches (the vectors did not fit).
    pub disk_reads: bool,
}

/// What opening the index had to recover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Log records written after the last checkpoint and replayed.
    pub replayed: usize,
    /// Bytes of torn (or, with salvage, damaged) log tail that were dropped.
    pub truncated_bytes: u64,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// One line per integrity problem; empty when the index is sound.
    pub problems: Vec<String>,
    /// Live vectors that no search can reach from the entry point by layer-0 links (a
    /// search walks layer 0 from one node it descends to). Not an integrity
    /// problem (their data and ids are intact) but a recall one: HNSW pruning can, rarely,
    /// remove a node's last in-link. `Index::consolidate` links them back.
    pub unreachable: usize,
    /// Links to slots that hold no node (left by a write that power loss undid in a
    /// non-`Immediate` mode). Searches skip them; `Index::consolidate` removes them.
    pub stale_links: usize,
    /// Live vectors checked.
    pub live: u64,
    /// Tombstoned slots.
    pub tombstones: usize,
    /// Free slots.
    pub free: usize,
}

impl VerifyReport {
    /// True when no integrity problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}
