//! The `hnswdb` command-line tool: create, fill, query and inspect an index directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hnswdb::datasets::{self, Matrix, recall_at_k};
use hnswdb::{Durability, Index, IndexOptions, Metric, OpenOptions};
use parking_lot::Mutex;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "hnswdb",
    version,
    about = "An embedded, disk-backed HNSW vector index",
    long_about = "hnswdb stores vectors under u64 ids in one directory and answers k-nearest-\
neighbour queries with an HNSW graph. Vectors and layer-0 links live in memory-mapped \
page files, so an index opens instantly whatever its size.\n\n\
Typical use:\n  hnswdb create idx --dim 384 --metric cosine\n  hnswdb import idx base.fvecs\n  \
hnswdb search idx --query query.fvecs --gt gt.ivecs --k 10 --ef 64"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty index in DIR.
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
    },
    /// Insert every row of FILE (.fvecs or .npy float32 2-D) on all cores.
    Import {
        /// Index directory.
        dir: PathBuf,
        /// Input vectors.
        file: PathBuf,
        /// Id of the first row; row i gets id N + i.
        #[arg(long, default_value_t = 0)]
        ids_from: u64,
        /// Worker threads (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Run every query of a file and report recall, throughput and latency.
    Search(SearchArgs),
    /// Delete vectors by id (all or nothing: an unknown id deletes none).
    Delete {
        /// Index directory.
        dir: PathBuf,
        /// Ids to delete.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Print the stored vector of an id (unit length under cosine).
    Get {
        /// Index directory.
        dir: PathBuf,
        /// The id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the whole index: headers and checksums (on open), id maps both ways, slot
    /// states, every link, the entry point, reachability. Exits 1 if anything is wrong.
    Verify {
        /// Index directory.
        dir: PathBuf,
        /// Treat unreachable nodes and stale links (recall problems, not corruption) as
        /// failures too.
        #[arg(long)]
        strict: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a checkpoint now: consolidate deleted nodes, sync pages, commit metadata,
    /// drop the log.
    Checkpoint {
        /// Index directory.
        dir: PathBuf,
    },
    /// Print counts, levels, file sizes and configuration.
    Stats {
        /// Index directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    /// Crash-test child: create an index in DIR and run a seeded workload on it, printing
    /// the number of each operation once it is acknowledged, until killed or done.
    #[command(hide = true)]
    CrashWorkload {
        /// Index directory (must not exist yet).
        dir: PathBuf,
        /// Workload seed.
        #[arg(long)]
        seed: u64,
        /// immediate, periodic or none.
        #[arg(long, default_value = "immediate")]
        durability: String,
        /// Stop after this many operations.
        #[arg(long, default_value_t = 100_000)]
        ops: usize,
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
struct SearchArgs {
    /// Index directory.
    dir: PathBuf,
    /// Queries (.fvecs or .npy).
    #[arg(long)]
    query: PathBuf,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Beam width; a comma-separated list runs one pass per value (e.g. 16,32,64).
    #[arg(long, default_value = "64", value_delimiter = ',')]
    ef: Vec<usize>,
    /// Ground truth (.ivecs of row ids) to compute recall@k.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Query threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object per ef value instead of text.
    #[arg(long)]
    json: bool,
    /// Untimed passes over the queries first (a new process starts with no page
    /// mapped: its first pass pays a page fault per page it touches).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn run(command: Command) -> CliResult {
    match command {
        Command::Create {
            dir,
            dim,
            metric,
            m,
            ef_construction,
            seed,
        } => {
            let opts = IndexOptions::new(dim, metric)
                .m(m)
                .ef_construction(ef_construction)
                .seed(seed);
            Index::create(&dir, &opts)?.close()?;
            println!(
                "created {} (dim {dim}, {}, M {m}, ef_construction {ef_construction})",
                dir.display(),
                metric.name()
            );
            Ok(())
        }
        Command::Import {
            dir,
            file,
            ids_from,
            threads,
        } => import(&dir, &file, ids_from, threads),
        Command::Search(args) => search(&args),
        Command::Stats { dir, json } => stats(&dir, json),
        Command::Delete { dir, ids } => {
            let index = Index::open(&dir)?;
            index.delete_batch(&ids)?;
            index.close()?;
            println!("deleted {} ids", ids.len());
            Ok(())
        }
        Command::Get { dir, id, json } => {
            let v = Index::open(&dir)?.get(id)?;
            if json {
                println!("{}", json!({"id": id, "vector": v}));
            } else {
                println!(
                    "{}",
                    v.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Ok(())
        }
        Command::Verify { dir, strict, json } => verify(&dir, strict, json),
        Command::Checkpoint { dir } => {
            let index = Index::open(&dir)?;
            index.consolidate()?;
            println!("checkpointed {} ({} vectors)", dir.display(), index.len());
            Ok(())
        }
        Command::Demo { dir, n, dim } => demo(dir, n, dim),
        Command::Synth {
            dir,
            n,
            dim,
            queries,
            metric,
            seed,
        } => {
            std::fs::create_dir_all(&dir)?;
            let start = Instant::now();
            let mut base = datasets::clustered(n + queries, dim, (n / 1000).max(1), seed);
            let q = base.split_off(queries);
            datasets::write_fvecs(&dir.join("base.fvecs"), &base)?;
            datasets::write_fvecs(&dir.join("query.fvecs"), &q)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let gt = datasets::exact_knn(&base, &q, 100.min(n), metric, threads);
            datasets::write_ivecs(&dir.join("gt.ivecs"), &gt)?;
            println!(
                "wrote {n} x {dim} base, {queries} queries, exact top-100 ({}) to {} in {:.1} s",
                metric.name(),
                dir.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::CrashWorkload {
            dir,
            seed,
            durability,
            ops,
        } => crash_workload(&dir, seed, &durability, ops),
    }
}

fn import(dir: &Path, file: &Path, ids_from: u64, threads: usize) -> CliResult {
    let data = datasets::read_vectors(file)?;
    let index = Index::open_with(dir, &OpenOptions::default().threads(threads))?;
    let bar = indicatif::ProgressBar::new(data.rows as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} vectors, {per_sec}, ETA {eta}",
        )
        .expect("static template"),
    );
    let start = Instant::now();
    const CHUNK: usize = 10_000;
    for first in (0..data.rows).step_by(CHUNK) {
        let rows = CHUNK.min(data.rows - first);
        let ids: Vec<u64> = (first..first + rows).map(|r| ids_from + r as u64).collect();
        index.insert_batch(
            &ids,
            &data.data[first * data.dim..(first + rows) * data.dim],
        )?;
        bar.inc(rows as u64);
    }
    bar.finish_and_clear();
    index.close()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "imported {} vectors in {secs:.2} s ({:.0} vectors/s)",
        data.rows,
        data.rows as f64 / secs
    );
    Ok(())
}

struct Pass {
    recall: Option<f64>,
    qps: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs every query once with beam `ef` on `threads` threads.
fn run_pass(
    index: &Index,
    queries: &Matrix,
    k: usize,
    ef: usize,
    gt: Option<&[Vec<u32>]>,
    threads: usize,
) -> hnswdb::Result<Pass> {
    let n = queries.rows;
    let latencies = Mutex::new(Vec::with_capacity(n));
    let results: Vec<Mutex<Vec<u64>>> = (0..n).map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    let error = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    match index.search_ef(queries.row(i), k, ef) {
                        Ok(hits) => *results[i].lock() = hits.iter().map(|h| h.id).collect(),
                        Err(e) => *error.lock() = Some(e),
                    }
                    mine.push(t.elapsed());
                }
                latencies.lock().extend(mine);
            });
        }
    });
    let elapsed = start.elapsed();
    if let Some(e) = error.into_inner() {
        return Err(e);
    }
    let mut lat: Vec<Duration> = latencies.into_inner();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let recall = gt.map(|gt| {
        let total: f64 = results
            .iter()
            .zip(gt)
            .map(|(found, truth)| {
                let truth: Vec<u64> = truth.iter().map(|&t| t as u64).collect();
                recall_at_k(&found.lock(), &truth, k)
            })
            .sum();
        total / n as f64
    });
    Ok(Pass {
        recall,
        qps: n as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

fn search(args: &SearchArgs) -> CliResult {
    let SearchArgs {
        dir,
        query,
        k,
        ef: efs,
        gt,
        threads,
        json,
        warmup,
    } = args;
    let (k, threads, json, warmup) = (*k, *threads, *json, *warmup);
    let opened = Instant::now();
    let index = Index::open(dir)?;
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let queries = datasets::read_vectors(query)?;
    let gt = gt.as_deref().map(datasets::read_ivecs).transpose()?;
    if let Some(gt) = &gt {
        if gt.len() < queries.rows {
            return Err(format!(
                "ground truth has {} rows for {} queries",
                gt.len(),
                queries.rows
            )
            .into());
        }
        if gt.iter().any(|row| row.len() < k) {
            return Err(format!("ground truth rows are shorter than k = {k}").into());
        }
    }
    for _ in 0..warmup {
        run_pass(
            &index,
            &queries,
            k,
            efs.iter().copied().max().unwrap_or(64),
            None,
            threads,
        )?;
    }
    for &ef in efs {
        let pass = run_pass(&index, &queries, k, ef, gt.as_deref(), threads)?;
        if json {
            println!(
                "{}",
                json!({"queries": queries.rows, "k": k, "ef": ef, "recall": pass.recall,
                       "qps": pass.qps, "p50_us": pass.p50_us, "p99_us": pass.p99_us, "threads": threads,
                       "open_ms": open_ms})
            );
        } else {
            let recall = pass.recall.map_or("-".to_string(), |r| format!("{r:.4}"));
            println!(
                "ef {ef:>4}  recall@{k} {recall}  {:>9.0} QPS  p50 {:>7.1} us  p99 {:>7.1} us  ({} queries, {threads} threads)",
                pass.qps, pass.p50_us, pass.p99_us, queries.rows
            );
        }
    }
    Ok(())
}

fn verify(dir: &Path, strict: bool, json: bool) -> CliResult {
    let start = Instant::now();
    let index = Index::open(dir)?;
    let recovery = index.recovery();
    let report = index.verify()?;
    let failed = !report.is_ok() || (strict && (report.unreachable > 0 || report.stale_links > 0));
    if json {
        println!(
            "{}",
            json!({"ok": !failed, "problems": report.problems, "unreachable": report.unreachable, "stale_links": report.stale_links,
                   "live": report.live, "tombstones": report.tombstones, "free": report.free,
                   "replayed_records": recovery.replayed, "truncated_log_bytes": recovery.truncated_bytes})
        );
    } else {
        if recovery.replayed > 0 || recovery.truncated_bytes > 0 {
            println!(
                "recovered: replayed {} log records, dropped {} bytes of torn log tail",
                recovery.replayed, recovery.truncated_bytes
            );
        }
        for p in &report.problems {
            println!("problem: {p}");
        }
        if report.stale_links > 0 {
            println!(
                "warning: {} links point at slots holding no vector (skipped by search; `hnswdb checkpoint` removes them)",
                report.stale_links
            );
        }
        if report.unreachable > 0 {
            println!(
                "warning: {} live vectors are unreachable by search (run `hnswdb checkpoint` to relink them)",
                report.unreachable
            );
        }
        println!(
            "{}: {} live, {} deleted awaiting consolidation, {} free slots; {} problems ({:.2} s)",
            if failed { "FAILED" } else { "ok" },
            report.live,
            report.tombstones,
            report.free,
            report.problems.len(),
            start.elapsed().as_secs_f64()
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Dimension of the crash-test workload's vectors.
pub const CRASH_DIM: usize = 8;

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "immediate" => Ok(Durability::Immediate),
        "periodic" => Ok(Durability::Periodic(Duration::from_millis(5))),
        "none" => Ok(Durability::None),
        other => Err(format!(
            "unknown durability {other:?} (immediate, periodic, none)"
        )),
    }
}

fn crash_workload(dir: &Path, seed: u64, durability: &str, ops: usize) -> CliResult {
    use std::io::Write;
    let opts = IndexOptions::new(CRASH_DIM, Metric::L2)
        .m(8)
        .ef_construction(64)
        .threads(2)
        .durability(parse_durability(durability)?)
        .checkpoint_bytes(64 << 10);
    let index = Index::create(dir, &opts)?;
    let mut workload = hnswdb::testing::Workload::new(seed, CRASH_DIM);
    let stdout = std::io::stdout();
    for i in 0..ops {
        let op = workload.next_op();
        hnswdb::testing::apply(&index, &op)?;
        // The line is the acknowledgement: written only after the call returned.
        let mut out = stdout.lock();
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn stats(dir: &Path, json: bool) -> CliResult {
    let index = Index::open(dir)?;
    let s = index.stats();
    let sizes: Vec<(&str, u64)> = ["vectors", "graph0", "meta.redb"]
        .into_iter()
        .map(|f| (f, file_size(&dir.join(f))))
        .collect();
    if json {
        let files: serde_json::Map<String, serde_json::Value> = sizes
            .iter()
            .map(|(f, b)| (f.to_string(), json!(b)))
            .collect();
        println!(
            "{}",
            json!({"len": s.len, "capacity": s.capacity, "high_water": s.high_water, "free_slots": s.free_slots,
                   "upper_nodes": s.upper_nodes, "max_level": s.max_level, "dim": s.dim, "metric": s.metric.name(),
                   "m": s.m, "ef_construction": s.ef_construction, "kernels": s.kernels, "files": files})
        );
    } else {
        println!("vectors       {}", s.len);
        println!(
            "slots         {} used, {} free, {} capacity",
            s.high_water, s.free_slots, s.capacity
        );
        println!(
            "levels        top level {}, {} nodes above layer 0",
            s.max_level, s.upper_nodes
        );
        println!(
            "config        dim {}, {}, M {}, ef_construction {}",
            s.dim,
            s.metric.name(),
            s.m,
            s.ef_construction
        );
        println!("kernels       {}", s.kernels);
        for (f, b) in sizes {
            println!(
                "file          {f:<10} {:>10.1} MiB",
                b as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(())
}

fn demo(dir: Option<PathBuf>, n: usize, dim: usize) -> CliResult {
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("demo-index")
        }
    };
    let nq = 200;
    println!(
        "generating {n} clustered vectors of dimension {dim} (+{nq} queries from the same clusters)"
    );
    let mut data = datasets::clustered(n + nq, dim, (n / 400).max(1), 42);
    let queries = data.split_off(nq);

    let start = Instant::now();
    let index = Index::create(&dir, &IndexOptions::new(dim, Metric::L2))?;
    let ids: Vec<u64> = (0..n as u64).collect();
    index.insert_batch(&ids, &data.data)?;
    index.close()?;
    println!(
        "built and persisted in {:.2} s at {}",
        start.elapsed().as_secs_f64(),
        dir.display()
    );

    let start = Instant::now();
    let index = Index::open(&dir)?;
    println!(
        "reopened in {:.2} ms: {} vectors",
        start.elapsed().as_secs_f64() * 1e3,
        index.len()
    );

    let truth: Vec<Vec<u32>> = (0..nq)
        .map(|q| {
            Ok(index
                .search_exact(queries.row(q), 10)?
                .iter()
                .map(|h| h.id as u32)
                .collect())
        })
        .collect::<hnswdb::Result<_>>()?;
    for ef in [16, 32, 64, 128] {
        let pass = run_pass(&index, &queries, 10, ef, Some(&truth), 1)?;
        println!(
            "ef {ef:>3}: recall@10 vs brute force {:.4}, {:.0} QPS (1 thread)",
            pass.recall.unwrap_or(0.0),
            pass.qps
        );
    }
    Ok(())
}
