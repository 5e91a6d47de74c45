//! The command line: every command, argument and help text (clap definitions only).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hnswdb::Metric;

#[derive(Parser)]
#[command(
    name = "hnswdb",
    version,
    about = "An embedded, disk-backed HNSW vector index",
    long_about = "hnswdb stores vectors under u64 ids in one directory and answers k-nearest-\
neighbour queries with an HNSW graph. Vectors and layer-0 links live in memory-mapped \
page files, so an index opens instantly whatever its size. Every write goes through a \
write-ahead log: once a command returns, its writes survive a crash.",
    after_help = "Typical use:\n  \
hnswdb create idx --dim 384 --metric cosine --index-field lang:keyword\n  \
hnswdb import idx base.fvecs                   # or .npy, or .jsonl with ids and payloads\n  \
hnswdb search idx --query query.fvecs --gt gt.ivecs --k 10 --ef 32,64,128\n  \
echo '[0.1, 0.2, ...]' | hnswdb search idx --vector - --k 5 --filter '{\"lang\": \"en\"}'\n  \
hnswdb export idx all.jsonl\n\n\
Exit codes: 0 success; 1 other error; 2 bad command line; 3 no index there, or one \
already exists; 4 locked by another writer; 5 corrupt, foreign or newer-format files; \
6 bad input (wrong dimension, NaN/inf, unknown or duplicate id or key, an id of the wrong kind, unreadable input file); \
7 I/O error or disk full; 8 verify found problems. With --json, an error is also printed \
on stdout as {\"error\": message, \"code\": exit code}."
)]
pub struct Cli {
    /// Print JSON, one object per line, instead of text (errors too, on stdout).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create an empty index in DIR.
    #[command(
        after_help = "M and ef_construction are fixed at creation: see docs/tuning.md. \
The index grows as vectors arrive; there is no maximum to set."
    )]
    Create {
        /// Directory to create the index in (created if missing).
        dir: PathBuf,
        /// Vector dimension.
        #[arg(long)]
        dim: usize,
        /// Distance: cosine (1 - cos), l2 (squared Euclidean) or ip (1 - dot product).
        #[arg(long, default_value = "cosine")]
        metric: Metric,
        /// Links per node (layer 0 keeps 2*M). Higher: better recall, more memory.
        #[arg(long, default_value_t = 16)]
        m: usize,
        /// Beam width while building. Higher: better graph, slower build.
        #[arg(long, default_value_t = 200)]
        ef_construction: usize,
        /// Seed of the level generator.
        #[arg(long, default_value_t = 100)]
        seed: u64,
        /// What the graph walk runs on: sq8 (fastest in memory), rabitq (a fifth of the
        /// codes at 384-d, for indexes larger than memory; see docs/larger-than-ram.md),
        /// rabitq:BITS (BITS 2 to 8 per component: tighter estimates for BITS times the
        /// codes), or auto: chosen to fit --memory-budget once the index holds --expected
        /// vectors (printed; see docs/larger-than-ram.md).
        #[arg(long, default_value = "sq8")]
        routing: RoutingArg,
        /// With --routing auto: the memory budget searches will be given, MiB.
        #[arg(long, value_name = "MIB")]
        memory_budget: Option<u64>,
        /// With --routing auto: how many vectors the index will hold.
        #[arg(long, value_name = "N")]
        expected: Option<u64>,
        /// How full vectors are stored: f32, f16 (half the disk and the bytes a re-rank
        /// reads, about three significant digits per component, at most ±65,504) or bf16
        /// (the same halving with f32's range, about two significant digits).
        #[arg(long, default_value = "f32")]
        storage: hnswdb::Storage,
        /// Index a payload field for filters: NAME:KIND, KIND one of keyword, int, float,
        /// bool (repeat for several; more can be added later with `index-field`).
        #[arg(long = "index-field", value_name = "NAME:KIND")]
        index_field: Vec<String>,
        /// What names the vectors, fixed for the index's life: int (u64 ids) or str
        /// (string keys, up to 1 KiB each; the index assigns them internal ids). Every
        /// command then takes and prints ids of that kind.
        #[arg(long, default_value = "int")]
        ids: hnswdb::IdKind,
    },
    /// Insert every vector of FILE on all cores: .fvecs or .npy (float32, 2-D; ids are
    /// row numbers) or .jsonl (lines {"id": 7, "vector": [...], "payload": {...}}, the
    /// payload optional).
    #[command(
        after_help = "Vectors go in chunks of 10,000, each one durable write (all or \
nothing): if a chunk fails (a duplicate id, say), the chunks before it stay and the error \
says how many vectors were imported."
    )]
    Import {
        /// Index directory.
        dir: PathBuf,
        /// Input vectors (.fvecs, .npy or .jsonl).
        file: PathBuf,
        /// Id of the first row of an .fvecs/.npy file; row i gets id N + i (on a
        /// string-id index, the key "N + i" in decimal). A .jsonl row carries its own id:
        /// an integer, or a string for a string-id index (--ids-from is refused there).
        /// Default 0.
        #[arg(long)]
        ids_from: Option<u64>,
        /// Worker threads (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Search: every query of a file (reporting recall, throughput and latency), or
    /// vectors given on the command line or stdin (printing their neighbours).
    Search(SearchArgs),
    /// Write every vector to FILE (.fvecs, .npy or .jsonl), in ascending id order.
    #[command(
        after_help = ".fvecs and .npy hold no ids: give --ids-out to keep them (one \
per line, in row order), or export .jsonl, which carries them."
    )]
    Export {
        /// Index directory.
        dir: PathBuf,
        /// Output file; its extension picks the format.
        file: PathBuf,
        /// Also write the ids, one per line in row order, to this file.
        #[arg(long)]
        ids_out: Option<PathBuf>,
    },
    /// Delete vectors by id (all or nothing: an unknown id deletes none, unless
    /// --missing-ok) or every vector whose payload matches --filter (one write).
    Delete {
        /// Index directory.
        dir: PathBuf,
        /// Ids to delete (keys on a string-id index).
        #[arg(required_unless_present = "filter", conflicts_with = "filter")]
        ids: Vec<String>,
        /// Delete every vector whose payload matches this filter (JSON; see
        /// docs/filters.md) instead of ids.
        #[arg(long)]
        filter: Option<String>,
        /// Skip ids that are not in the index instead of failing.
        #[arg(long, conflicts_with = "filter")]
        missing_ok: bool,
        /// Relocate the index into dense files at the end once free slots exceed this
        /// fraction of the slots ever used (default 0.1; 1 never; see docs/tuning.md).
        #[arg(long)]
        relocate_above: Option<f64>,
    },
    /// Print the number of live vectors, or of those whose payload matches --filter.
    Count {
        /// Index directory.
        dir: PathBuf,
        /// Only vectors whose payload matches this filter (JSON; see docs/filters.md).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Print the stored vectors of ids (or of every vector whose payload matches
    /// --filter, in id order), one line each (unit length under cosine), and their
    /// payloads.
    Get {
        /// Index directory.
        dir: PathBuf,
        /// The ids (keys on a string-id index).
        #[arg(required_unless_present = "filter", conflicts_with = "filter")]
        ids: Vec<String>,
        /// Every vector whose payload matches this filter (JSON; see docs/filters.md).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Merge a JSON object into the payload of an id (top-level keys; a key set to null
    /// is removed), or with --replace overwrite it. A null payload removes it.
    SetPayload {
        /// Index directory.
        dir: PathBuf,
        /// The id (a key on a string-id index).
        id: String,
        /// The payload, as JSON.
        payload: String,
        /// Merge into the payload the id has (the default).
        #[arg(long, conflicts_with = "replace")]
        merge: bool,
        /// Replace the payload the id has.
        #[arg(long)]
        replace: bool,
    },
    /// Index one more payload field (NAME:KIND) of an existing index.
    IndexField {
        /// Index directory.
        dir: PathBuf,
        /// NAME:KIND, KIND one of keyword, int, float, bool.
        field: String,
    },
    /// Find the smallest ef whose recall@k reaches TARGET on a sample of stored vectors
    /// (against exact search) and print it (pass it to `search --ef`).
    Tune {
        /// Index directory.
        dir: PathBuf,
        /// Target recall@k.
        #[arg(long, default_value_t = 0.95)]
        target: f64,
        /// k of recall@k.
        #[arg(long, default_value_t = 10)]
        k: usize,
    },
    /// Check the whole index: headers and checksums (on open), id maps both ways, slot
    /// states, every link, the entry point, reachability. Exits 8 if anything is wrong.
    Verify {
        /// Index directory.
        dir: PathBuf,
        /// Treat unreachable nodes and stale links (recall problems, not corruption) as
        /// failures too.
        #[arg(long)]
        strict: bool,
    },
    /// Write a checkpoint now: consolidate deleted nodes, sync pages, commit metadata,
    /// drop the log.
    Checkpoint {
        /// Index directory.
        dir: PathBuf,
    },
    /// Copy the index into DEST as of one moment, while other processes may keep writing
    /// to it; the copy is checked (it opens on its own and verifies).
    Backup {
        /// Index directory.
        dir: PathBuf,
        /// Where to put the copy (must not exist).
        dest: PathBuf,
    },
    /// Rebuild the index from its live vectors into dense files, giving back the space of
    /// deleted ones; the new files replace the old in one atomic step. Nothing else may
    /// write meanwhile (the index is locked as for any write).
    Compact {
        /// Index directory.
        dir: PathBuf,
        /// Copy the graph as it is instead of rebuilding it: live rows and their links,
        /// renumbered densely in breadth-first order (O(n) copies, no re-insertion; what
        /// `delete` does by itself past --relocate-above).
        #[arg(long)]
        relocate: bool,
    },
    /// Print counts, levels, file sizes and configuration.
    Stats {
        /// Index directory.
        dir: PathBuf,
    },
    /// Write a synthetic benchmark set to DIR: base.fvecs, query.fvecs (drawn from the same
    /// clusters) and gt.ivecs (exact top-100 by brute force).
    Synth {
        /// Output directory.
        dir: PathBuf,
        /// Base vectors.
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// Dimension.
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// Held-out queries.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Metric of the ground truth.
        #[arg(long, default_value = "l2")]
        metric: Metric,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build an index of clustered vectors, close it, reopen it and query it.
    Demo {
        /// Where to build (a temporary directory by default).
        dir: Option<PathBuf>,
        /// Number of vectors.
        #[arg(long, default_value_t = 20_000)]
        n: usize,
        /// Dimension.
        #[arg(long, default_value_t = 64)]
        dim: usize,
    },
}

/// Arguments of `hnswdb search`.
#[derive(clap::Args)]
#[command(
    after_help = "Benchmark mode (--query FILE) prints recall@k (with --gt), queries \
per second and p50/p99 latency per ef (with --json, also the bytes each query read from \
storage, on Linux). Lookup mode (--vector) prints each query's \
neighbours, nearest first: --vector 0.1,0.2,... for one vector, or --vector - to read \
one vector per line from stdin (a JSON array, or numbers separated by commas or spaces)."
)]
pub struct SearchArgs {
    /// Index directory.
    pub dir: PathBuf,
    /// Queries (.fvecs or .npy): benchmark mode.
    #[arg(long, required_unless_present = "vector", conflicts_with = "vector")]
    pub query: Option<PathBuf>,
    /// One query vector (comma-separated numbers or a JSON array), or - for one per line
    /// on stdin: lookup mode.
    #[arg(long, allow_hyphen_values = true)]
    pub vector: Option<String>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Beam width (at least k is used); in benchmark mode a comma-separated list runs
    /// one pass per value (e.g. 16,32,64).
    #[arg(long, default_value = "64", value_delimiter = ',')]
    pub ef: Vec<usize>,
    /// Ground truth (.ivecs of row ids) to compute recall@k.
    #[arg(long, requires = "query")]
    pub gt: Option<PathBuf>,
    /// Query threads (benchmark mode).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Untimed passes over the queries first (a new process starts with no page
    /// mapped: its first pass pays a page fault per page it touches).
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Memory the index may live in, MiB: the routing codes and layer-0 lists are
    /// pinned first, and when the vectors do not fit, re-ranks read them from disk in
    /// batches (see docs/larger-than-ram.md).
    #[arg(long)]
    pub memory_budget: Option<u64>,
    /// Only vectors whose payload matches this filter (JSON, e.g. '{"lang": "en",
    /// "year": {"$gte": 2020}}'; see docs/filters.md), in both modes: a benchmark's
    /// --gt must then hold the filtered ground truth.
    #[arg(long)]
    pub filter: Option<String>,
    /// Lookup mode: every vector within this distance instead of the k nearest (range
    /// search; --k and --offset are then ignored).
    #[arg(long, conflicts_with = "query", allow_negative_numbers = true)]
    pub within: Option<f32>,
    /// Lookup mode: skip the nearest N (paging).
    #[arg(long, default_value_t = 0, conflicts_with = "query")]
    pub offset: usize,
    /// Lookup mode: print each hit's payload too (as `--include payload`).
    #[arg(long, conflicts_with = "query")]
    pub payloads: bool,
    /// Lookup mode: what to print with each hit beyond its id and distance, a
    /// comma-separated list of payload and vector.
    #[arg(long, conflicts_with = "query", value_delimiter = ',')]
    pub include: Vec<Include>,
}

/// What `search --include` adds to each hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Include {
    /// The hit's payload (null when it has none).
    Payload,
    /// The hit's stored vector (unit length under cosine).
    Vector,
}

/// `create --routing`: a routing, or `auto` (planned from the budget).
#[derive(Clone, Copy, Debug)]
pub enum RoutingArg {
    Fixed(hnswdb::Routing),
    Auto,
}

impl std::str::FromStr for RoutingArg {
    type Err = hnswdb::Error;
    fn from_str(s: &str) -> hnswdb::Result<RoutingArg> {
        match s.eq_ignore_ascii_case("auto") {
            true => Ok(RoutingArg::Auto),
            false => s.parse().map(RoutingArg::Fixed),
        }
    }
}
