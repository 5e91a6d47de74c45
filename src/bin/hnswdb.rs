//! The `hnswdb` command-line tool: create, fill, query, export and inspect an index
//! directory. Every command that prints results takes `--json`; exit codes are listed in
//! `--help` and stay stable for scripts.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hnswdb::datasets::{self, Matrix, VectorFormat, VectorWriter, recall_at_k};
use hnswdb::{Durability, Error, Index, IndexOptions, Metric, OpenOptions};
use parking_lot::Mutex;
use serde_json::{Value, json};

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
hnswdb create idx --dim 384 --metric cosine\n  \
hnswdb import idx base.fvecs                   # or .npy, or .jsonl with ids\n  \
hnswdb search idx --query query.fvecs --gt gt.ivecs --k 10 --ef 32,64,128\n  \
echo '[0.1, 0.2, ...]' | hnswdb search idx --vector - --k 5\n  \
hnswdb export idx all.jsonl\n\n\
Exit codes: 0 success; 1 other error; 2 bad command line; 3 no index there, or one \
already exists; 4 locked by another writer; 5 corrupt, foreign or newer-format files; \
6 bad input (wrong dimension, NaN/inf, unknown or duplicate id, unreadable input file); \
7 I/O error or disk full; 8 verify found problems. With --json, an error is also printed \
on stdout as {\"error\": message, \"code\": exit code}."
)]
struct Cli {
    /// Print JSON, one object per line, instead of text (errors too, on stdout).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Insert every vector of FILE on all cores: .fvecs or .npy (float32, 2-D; ids are
    /// row numbers) or .jsonl (lines {"id": 7, "vector": [...]}).
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
        /// Id of the first row of an .fvecs/.npy file; row i gets id N + i.
        #[arg(long, default_value_t = 0)]
        ids_from: u64,
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
    /// Delete vectors by id (all or nothing: an unknown id deletes none).
    Delete {
        /// Index directory.
        dir: PathBuf,
        /// Ids to delete.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Print the stored vectors of ids, one line each (unit length under cosine).
    Get {
        /// Index directory.
        dir: PathBuf,
        /// The ids.
        #[arg(required = true)]
        ids: Vec<u64>,
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
#[command(
    after_help = "Benchmark mode (--query FILE) prints recall@k (with --gt), queries \
per second and p50/p99 latency per ef. Lookup mode (--vector) prints each query's \
neighbours, nearest first: --vector 0.1,0.2,... for one vector, or --vector - to read \
one vector per line from stdin (a JSON array, or numbers separated by commas or spaces)."
)]
struct SearchArgs {
    /// Index directory.
    dir: PathBuf,
    /// Queries (.fvecs or .npy): benchmark mode.
    #[arg(long, required_unless_present = "vector", conflicts_with = "vector")]
    query: Option<PathBuf>,
    /// One query vector (comma-separated numbers or a JSON array), or - for one per line
    /// on stdin: lookup mode.
    #[arg(long, allow_hyphen_values = true)]
    vector: Option<String>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Beam width (at least k is used); in benchmark mode a comma-separated list runs
    /// one pass per value (e.g. 16,32,64).
    #[arg(long, default_value = "64", value_delimiter = ',')]
    ef: Vec<usize>,
    /// Ground truth (.ivecs of row ids) to compute recall@k.
    #[arg(long, requires = "query")]
    gt: Option<PathBuf>,
    /// Query threads (benchmark mode).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Untimed passes over the queries first (a new process starts with no page
    /// mapped: its first pass pays a page fault per page it touches).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
}

/// Exit code of a failed verify (see the `--help` text).
const EXIT_VERIFY_FAILED: u8 = 8;

/// The exit code a script sees for `e` (documented in `--help`).
fn exit_code(e: &(dyn std::error::Error + 'static)) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(Error::NotFound(_) | Error::AlreadyExists(_)) => 3,
        Some(Error::Locked(_)) => 4,
        Some(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => 5,
        Some(
            Error::DimensionMismatch { .. }
            | Error::NonFinite { .. }
            | Error::ZeroVector
            | Error::DuplicateId(_)
            | Error::UnknownId(_)
            | Error::InvalidOption(_),
        ) => 6,
        Some(Error::DiskFull { .. } | Error::Io { .. }) => 7,
        _ if e.downcast_ref::<InputError>().is_some() => 6,
        _ => 1,
    }
}

/// A malformed command-line or stdin vector.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output { json: cli.json };
    match run(cli.command, out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(e.as_ref());
            eprintln!("error: {e}");
            if out.json {
                println!("{}", json!({"error": e.to_string(), "code": code}));
            }
            ExitCode::from(code)
        }
    }
}

/// Prints each result as a JSON line or as text.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn emit(self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }
}

type CliResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn run(command: Command, out: Output) -> CliResult<u8> {
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
            out.emit(
                json!({"created": dir, "dim": dim, "metric": metric.name(), "m": m,
                       "ef_construction": ef_construction, "seed": seed}),
                || {
                    format!(
                        "created {} (dim {dim}, {}, M {m}, ef_construction {ef_construction})",
                        dir.display(),
                        metric.name()
                    )
                },
            );
        }
        Command::Import {
            dir,
            file,
            ids_from,
            threads,
        } => import(&dir, &file, ids_from, threads, out)?,
        Command::Search(args) => match &args.vector {
            Some(vector) => lookup(&args, vector, out)?,
            None => benchmark(&args, out)?,
        },
        Command::Export { dir, file, ids_out } => export(&dir, &file, ids_out.as_deref(), out)?,
        Command::Stats { dir } => stats(&dir, out)?,
        Command::Delete { dir, ids } => {
            let index = Index::open(&dir)?;
            index.delete_batch(&ids)?;
            let len = index.len();
            index.close()?;
            out.emit(json!({"deleted": ids.len(), "len": len}), || {
                format!("deleted {} ids ({len} vectors left)", ids.len())
            });
        }
        Command::Get { dir, ids } => {
            let index = Index::open(&dir)?;
            for id in ids {
                let v = index.get(id)?;
                out.emit(json!({"id": id, "vector": v}), || {
                    v.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                });
            }
        }
        Command::Verify { dir, strict } => return verify(&dir, strict, out),
        Command::Checkpoint { dir } => {
            let index = Index::open(&dir)?;
            index.consolidate()?;
            out.emit(json!({"checkpointed": dir, "len": index.len()}), || {
                format!("checkpointed {} ({} vectors)", dir.display(), index.len())
            });
        }
        Command::Demo { dir, n, dim } => demo(dir, n, dim, out)?,
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
            let secs = start.elapsed().as_secs_f64();
            out.emit(
                json!({"dir": dir, "n": n, "dim": dim, "queries": queries, "metric": metric.name(), "seconds": secs}),
                || {
                    format!(
                        "wrote {n} x {dim} base, {queries} queries, exact top-100 ({}) to {} in {secs:.1} s",
                        metric.name(),
                        dir.display(),
                    )
                },
            );
        }
        Command::CrashWorkload {
            dir,
            seed,
            durability,
            ops,
        } => crash_workload(&dir, seed, &durability, ops)?,
    }
    Ok(0)
}

/// Reports import progress: a bar with rate and ETA on a terminal, plain lines (about
/// every 10%) otherwise, so that logs of scripted imports stay readable.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        total: usize,
        done: usize,
        next_report: usize,
        start: Instant,
    },
}

impl Progress {
    fn new(total: usize) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} vectors, {per_sec}, ETA {eta}",
                )
                .expect("static template"),
            );
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                total,
                done: 0,
                next_report: total.div_ceil(10),
                start: Instant::now(),
            }
        }
    }

    fn advance(&mut self, rows: usize) {
        match self {
            Progress::Bar(bar) => bar.inc(rows as u64),
            Progress::Lines {
                total,
                done,
                next_report,
                start,
            } => {
                *done += rows;
                if *done >= *next_report && *done < *total {
                    let rate = *done as f64 / start.elapsed().as_secs_f64();
                    eprintln!(
                        "imported {done}/{total} vectors ({rate:.0}/s, ETA {:.0} s)",
                        (*total - *done) as f64 / rate
                    );
                    *next_report += total.div_ceil(10);
                }
            }
        }
    }

    fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn import(dir: &Path, file: &Path, ids_from: u64, threads: usize, out: Output) -> CliResult {
    let (ids, data) = match VectorFormat::of_path(file)? {
        VectorFormat::Jsonl => datasets::read_jsonl(file)?,
        _ => {
            let data = datasets::read_vectors(file)?;
            ((ids_from..ids_from + data.rows as u64).collect(), data)
        }
    };
    let index = Index::open_with(dir, &OpenOptions::default().threads(threads))?;
    let mut progress = Progress::new(data.rows);
    let start = Instant::now();
    const CHUNK: usize = 10_000;
    for first in (0..data.rows).step_by(CHUNK) {
        let rows = CHUNK.min(data.rows - first);
        index
            .insert_batch(
                &ids[first..first + rows],
                &data.data[first * data.dim..(first + rows) * data.dim],
            )
            .inspect_err(|_| {
                // Earlier chunks are durable: say so; the error (and its code) stays.
                if first > 0 {
                    eprintln!("note: the {first} vectors before the failing chunk were imported");
                }
            })?;
        progress.advance(rows);
    }
    progress.finish();
    let len = index.len();
    index.close()?;
    let secs = start.elapsed().as_secs_f64();
    let rate = data.rows as f64 / secs;
    out.emit(
        json!({"imported": data.rows, "seconds": secs, "vectors_per_second": rate, "len": len}),
        || {
            format!(
                "imported {} vectors in {secs:.2} s ({rate:.0} vectors/s); the index holds {len}",
                data.rows
            )
        },
    );
    Ok(())
}

fn export(dir: &Path, file: &Path, ids_out: Option<&Path>, out: Output) -> CliResult {
    let format = VectorFormat::of_path(file)?;
    let index = Index::open(dir)?;
    let ids = index.ids()?;
    let mut writer = VectorWriter::create(file, format, ids.len(), index.dim())?;
    for &id in &ids {
        writer.push(id, &index.get(id)?)?;
    }
    writer.finish()?;
    if let Some(path) = ids_out {
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(path, text)?;
    }
    let positional = ids.iter().enumerate().all(|(i, &id)| id == i as u64);
    if format != VectorFormat::Jsonl && ids_out.is_none() && !positional {
        eprintln!(
            "warning: ids are not 0..{} and {} rows carry none: use --ids-out or .jsonl to keep them",
            ids.len(),
            file.display()
        );
    }
    out.emit(json!({"exported": ids.len(), "file": file}), || {
        format!("exported {} vectors to {}", ids.len(), file.display())
    });
    Ok(())
}

/// Parses one query vector: a JSON array, or numbers separated by commas or whitespace.
fn parse_vector(text: &str) -> Result<Vec<f32>, InputError> {
    let body = text.trim().trim_start_matches('[').trim_end_matches(']');
    body.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .map_err(|_| InputError(format!("not a number in the query vector: {t:?}")))
        })
        .collect()
}

/// Lookup mode: prints the neighbours of each vector given on the command line or stdin.
fn lookup(args: &SearchArgs, vector: &str, out: Output) -> CliResult {
    let index = Index::open(&args.dir)?;
    let ef = match args.ef[..] {
        [ef] => ef,
        _ => return Err(InputError("lookup mode takes one --ef value".into()).into()),
    };
    let queries: Vec<String> = if vector == "-" {
        std::io::stdin()
            .lock()
            .lines()
            .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .collect::<Result<_, _>>()?
    } else {
        vec![vector.to_string()]
    };
    for (i, text) in queries.iter().enumerate() {
        let hits = index.search_ef(&parse_vector(text)?, args.k, ef)?;
        let results: Vec<Value> = hits
            .iter()
            .map(|h| json!({"id": h.id, "distance": h.distance}))
            .collect();
        out.emit(
            json!({"query": i, "k": args.k, "ef": ef, "results": results}),
            || {
                let lines: Vec<String> = hits
                    .iter()
                    .enumerate()
                    .map(|(rank, h)| format!("{}\t{}\t{}", rank + 1, h.id, h.distance))
                    .collect();
                let header = if queries.len() > 1 {
                    format!("# query {i}\n")
                } else {
                    String::new()
                };
                format!("{header}{}", lines.join("\n"))
            },
        );
    }
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

/// Benchmark mode: runs every query of a file per ef and reports recall and speed.
fn benchmark(args: &SearchArgs, out: Output) -> CliResult {
    let SearchArgs {
        dir,
        query,
        k,
        ef: efs,
        gt,
        threads,
        warmup,
        vector: _,
    } = args;
    let (k, threads, warmup) = (*k, *threads, *warmup);
    let query = query
        .as_deref()
        .expect("clap requires --query without --vector");
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
        out.emit(
            json!({"queries": queries.rows, "k": k, "ef": ef, "recall": pass.recall,
                   "qps": pass.qps, "p50_us": pass.p50_us, "p99_us": pass.p99_us, "threads": threads,
                   "open_ms": open_ms}),
            || {
                let recall = pass.recall.map_or("-".to_string(), |r| format!("{r:.4}"));
                format!(
                    "ef {ef:>4}  recall@{k} {recall}  {:>9.0} QPS  p50 {:>7.1} us  p99 {:>7.1} us  ({} queries, {threads} threads)",
                    pass.qps, pass.p50_us, pass.p99_us, queries.rows
                )
            },
        );
    }
    Ok(())
}

fn verify(dir: &Path, strict: bool, out: Output) -> CliResult<u8> {
    let start = Instant::now();
    let index = Index::open(dir)?;
    let recovery = index.recovery();
    let report = index.verify()?;
    let failed = !report.is_ok() || (strict && (report.unreachable > 0 || report.stale_links > 0));
    if out.json {
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
    Ok(if failed { EXIT_VERIFY_FAILED } else { 0 })
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
        .checkpoint_bytes(64 << 10)
        // Train SQ8 codes early so that kills also land in code training and retraining.
        .quantize_after(64);
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

fn stats(dir: &Path, out: Output) -> CliResult {
    let index = Index::open(dir)?;
    let s = index.stats();
    let codes = format!("codes.{}", s.codes_generation);
    let mut names = vec!["vectors", "graph0", "meta.redb"];
    if s.codes_generation > 0 {
        names.push(&codes);
    }
    let sizes: Vec<(&str, u64)> = names
        .into_iter()
        .map(|f| (f, file_size(&dir.join(f))))
        .collect();
    if out.json {
        let files: serde_json::Map<String, serde_json::Value> = sizes
            .iter()
            .map(|(f, b)| (f.to_string(), json!(b)))
            .collect();
        println!(
            "{}",
            json!({"len": s.len, "capacity": s.capacity, "high_water": s.high_water, "free_slots": s.free_slots,
                   "upper_nodes": s.upper_nodes, "max_level": s.max_level, "dim": s.dim, "metric": s.metric.name(),
                   "m": s.m, "ef_construction": s.ef_construction, "kernels": s.kernels,
                   "codes_generation": s.codes_generation, "files": files})
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
        if s.codes_generation > 0 {
            println!(
                "search        walks on SQ8 codes (codes.{}), re-ranks exactly",
                s.codes_generation
            );
        } else {
            println!("search        walks on exact vectors (no SQ8 codes trained yet)");
        }
        for (f, b) in sizes {
            println!(
                "file          {f:<10} {:>10.1} MiB",
                b as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(())
}

fn demo(dir: Option<PathBuf>, n: usize, dim: usize, out: Output) -> CliResult {
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("demo-index")
        }
    };
    let nq = 200;
    // Narration goes to stderr under --json so that stdout stays one JSON object a line.
    let say = |line: String| {
        if out.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "generating {n} clustered vectors of dimension {dim} (+{nq} queries from the same clusters)"
    ));
    let mut data = datasets::clustered(n + nq, dim, (n / 400).max(1), 42);
    let queries = data.split_off(nq);

    let start = Instant::now();
    let index = Index::create(&dir, &IndexOptions::new(dim, Metric::L2))?;
    let ids: Vec<u64> = (0..n as u64).collect();
    index.insert_batch(&ids, &data.data)?;
    index.close()?;
    let build_s = start.elapsed().as_secs_f64();
    say(format!(
        "built and persisted in {build_s:.2} s at {}",
        dir.display()
    ));

    let start = Instant::now();
    let index = Index::open(&dir)?;
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    say(format!(
        "reopened in {open_ms:.2} ms: {} vectors",
        index.len()
    ));

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
        let recall = pass.recall.unwrap_or(0.0);
        out.emit(
            json!({"vectors": n, "dim": dim, "build_s": build_s, "open_ms": open_ms, "ef": ef,
                   "recall": recall, "qps": pass.qps}),
            || {
                format!(
                    "ef {ef:>3}: recall@10 vs brute force {recall:.4}, {:.0} QPS (1 thread)",
                    pass.qps
                )
            },
        );
    }
    Ok(())
}
