//! `hnswdb search`: lookup mode (neighbours of vectors given on the command line or
//! stdin) and benchmark mode (recall, QPS and latency per ef over a query file).

use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hnswdb::{Filter, Hit, Index, Query};
use hnswdb_datasets::{Matrix, recall_at_k};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::args::{Include, SearchArgs};
use crate::{CliResult, InputError, Output, input_file};

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

/// The open options `--memory-budget` asks for.
fn budget(args: &SearchArgs) -> hnswdb::OpenOptions {
    let options = hnswdb::OpenOptions::default();
    match args.memory_budget {
        Some(mib) => options.memory_budget(mib << 20),
        None => options,
    }
}

/// Lookup mode: prints the neighbours of each vector given on the command line or stdin.
pub fn lookup(args: &SearchArgs, vector: &str, out: Output) -> CliResult {
    let index = crate::open_for_reading_with(&args.dir, budget(args))?;
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
    let filter = args.filter.as_deref().map(Filter::parse).transpose()?;
    let payload = args.payloads || args.include.contains(&Include::Payload);
    let vector = args.include.contains(&Include::Vector);
    let mut query = Query::new(args.k)
        .ef(ef)
        .offset(args.offset)
        .include_payload(payload)
        .include_vector(vector);
    if let Some(f) = &filter {
        query = query.filter(f);
    }
    for (i, text) in queries.iter().enumerate() {
        let v = parse_vector(text)?;
        let hits = match args.within {
            Some(d) => within(&index, &v, d, filter.as_ref(), payload, vector)?,
            None => index.search_hits(&v, &query)?,
        };
        let names: Vec<_> = hits
            .iter()
            .map(|h| crate::ids::id_json(&index, h.id))
            .collect::<CliResult<_>>()?;
        let results: Vec<Value> = hits
            .iter()
            .zip(&names)
            .map(|(h, id)| hit_json(h, id, payload, vector))
            .collect();
        out.emit(
            json!({"query": i, "k": args.k, "ef": ef, "results": results}),
            || {
                let lines: Vec<String> = hits
                    .iter()
                    .zip(&names)
                    .enumerate()
                    .map(|(rank, (h, id))| {
                        let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
                        let mut line = format!("{}\t{id}\t{}", args.offset + rank + 1, h.distance);
                        if payload {
                            line += &format!("\t{}", h.payload.clone().unwrap_or(Value::Null));
                        }
                        if let Some(v) = &h.vector {
                            line += &format!("\t{}", json!(v));
                        }
                        line
                    })
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

/// Range search (`--within`) as hits: the vectors within `d`, then what `--include`
/// asks for of each (one left out if it was deleted in between).
fn within(
    index: &Index,
    v: &[f32],
    d: f32,
    filter: Option<&Filter>,
    payload: bool,
    vector: bool,
) -> hnswdb::Result<Vec<Hit>> {
    let near = index.search_within(v, d, filter)?;
    let ids: Vec<u64> = near.iter().map(|n| n.id).collect();
    let mut records: std::collections::HashMap<u64, hnswdb::Record> = index
        .records(&ids, payload, vector)?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    Ok(near
        .into_iter()
        .filter_map(|n| {
            let r = records.remove(&n.id)?;
            Some(Hit {
                id: n.id,
                distance: n.distance,
                payload: r.payload,
                vector: r.vector,
            })
        })
        .collect())
}

/// A hit as JSON: its id and distance, and what `--include` asked for.
/// A hit as JSON, under the id the user knows it by (`id`, from `ids::id_json`).
fn hit_json(h: &Hit, id: &Value, payload: bool, vector: bool) -> Value {
    let mut o = json!({"id": id, "distance": h.distance});
    if payload {
        o["payload"] = h.payload.clone().unwrap_or(Value::Null);
    }
    if vector {
        o["vector"] = json!(h.vector);
    }
    o
}

pub struct Pass {
    pub recall: Option<f64>,
    pub qps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Runs every query once with beam `ef` on `threads` threads, answers restricted to
/// those `filter` admits if there is one.
pub fn run_pass(
    index: &Index,
    queries: &Matrix,
    (k, ef): (usize, usize),
    filter: Option<&Filter>,
    gt: Option<&[Vec<u32>]>,
    threads: usize,
) -> hnswdb::Result<Pass> {
    let mut query = Query::new(k).ef(ef);
    if let Some(f) = filter {
        query = query.filter(f);
    }
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
                    match index.search_with(queries.row(i), &query) {
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
    let recall = match gt {
        Some(gt) => {
            let mut total = 0.0;
            for (found, truth) in results.iter().zip(gt) {
                let found = truth_ids(index, &found.lock())?;
                let truth: Vec<u64> = truth.iter().map(|&t| t as u64).collect();
                total += recall_at_k(&found, &truth, k);
            }
            Some(total / n as f64)
        }
        None => None,
    };
    Ok(Pass {
        recall,
        qps: n as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

/// The ids of `found` as a ground-truth file numbers them (row numbers): themselves, or on
/// a string-id index their keys, which an import of a vector file makes the row numbers.
fn truth_ids(index: &Index, found: &[u64]) -> hnswdb::Result<Vec<u64>> {
    if index.id_kind() == hnswdb::IdKind::Int {
        return Ok(found.to_vec());
    }
    let keys = index.keys_of(found)?;
    keys.into_iter()
        .zip(found)
        .map(|(key, id)| {
            key.as_deref().and_then(|k| k.parse().ok()).ok_or_else(|| {
                hnswdb::Error::InvalidOption(format!(
                    "id {id} has key {key:?}, not a row number: --gt needs the keys an \
                         import of a vector file gives"
                ))
            })
        })
        .collect()
}

/// Bytes this process has caused to be fetched from storage (Linux's `/proc/self/io`
/// `read_bytes`): page faults on the mapped files and direct reads alike, the page
/// cache's hits not. `None` where the kernel does not report it.
fn storage_read_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Benchmark mode: runs every query of a file per ef and reports recall and speed.
pub fn benchmark(args: &SearchArgs, out: Output) -> CliResult {
    let SearchArgs {
        dir,
        query,
        k,
        ef: efs,
        gt,
        threads,
        warmup,
        vector: _,
        filter,
        offset: _,
        payloads: _,
        include: _,
        memory_budget: _,
        within: _,
    } = args;
    let (k, threads, warmup) = (*k, *threads, *warmup);
    let query = query
        .as_deref()
        .expect("clap requires --query without --vector");
    let opened = Instant::now();
    let index = crate::open_for_reading_with(dir, budget(args))?;
    let resident = index
        .residency()
        .map(|r| (r.resident.clone(), r.pinned, r.disk_reads));
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let queries = input_file(hnswdb_datasets::read_vectors(query))?;
    let gt = input_file(gt.as_deref().map(hnswdb_datasets::read_ivecs).transpose())?;
    let filter = filter.as_deref().map(Filter::parse).transpose()?;
    if let Some(gt) = &gt {
        if gt.len() < queries.rows {
            let rows = (gt.len(), queries.rows);
            let text = format!("ground truth has {} rows for {} queries", rows.0, rows.1);
            return Err(InputError(text).into());
        }
        if gt.iter().any(|row| row.len() < k) {
            let text = format!("ground truth rows are shorter than k = {k}");
            return Err(InputError(text).into());
        }
    }
    for _ in 0..warmup {
        let ef = efs.iter().copied().max().unwrap_or(64);
        run_pass(&index, &queries, (k, ef), filter.as_ref(), None, threads)?;
    }
    for &ef in efs {
        let before = storage_read_bytes();
        let pass = run_pass(
            &index,
            &queries,
            (k, ef),
            filter.as_ref(),
            gt.as_deref(),
            threads,
        )?;
        let read_per_query = before
            .zip(storage_read_bytes())
            .map(|(b, a)| a.saturating_sub(b) as f64 / queries.rows as f64);
        out.emit(
            json!({"queries": queries.rows, "k": k, "ef": ef, "recall": pass.recall,
                   "qps": pass.qps, "p50_us": pass.p50_us, "p99_us": pass.p99_us, "threads": threads,
                   "open_ms": open_ms, "resident": resident, "read_bytes_per_query": read_per_query}),
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
