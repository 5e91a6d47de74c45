//! Every command but `search` (see `search`), each a function of its parsed arguments.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hnswdb::{FieldSpec, Filter, IdKind, Index, IndexOptions, Metric, OpenOptions};
use hnswdb_datasets::{RowId, VectorFormat, VectorWriter};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::args::{Command, RoutingArg};
use crate::ids::{id_json, id_out, ids_in, ints_of_rows, keys_of_rows};
use crate::{CliResult, EXIT_VERIFY_FAILED, InputError, Output, input_file, search};

/// The routing `create` asked for; for `auto`, the one `IndexOptions::routing_for` plans
/// for `budget_mib` and `expected` vectors (both required then, refused otherwise).
fn planned_routing(
    opts: &IndexOptions,
    routing: RoutingArg,
    budget_mib: Option<u64>,
    expected: Option<u64>,
) -> CliResult<hnswdb::Routing> {
    match (routing, budget_mib, expected) {
        (RoutingArg::Auto, Some(mib), Some(n)) => {
            let open = OpenOptions::default().memory_budget(mib << 20);
            Ok(opts.routing_for(&open, n)?)
        }
        (RoutingArg::Auto, _, _) => Err(hnswdb::Error::InvalidOption(
            "--routing auto needs --memory-budget and --expected".into(),
        )
        .into()),
        (RoutingArg::Fixed(_), Some(_), _) | (RoutingArg::Fixed(_), _, Some(_)) => {
            Err(hnswdb::Error::InvalidOption(
                "--memory-budget and --expected only plan --routing auto".into(),
            )
            .into())
        }
        (RoutingArg::Fixed(r), None, None) => Ok(r),
    }
}

/// Runs one command; returns the exit code of a command that completed.
pub fn run(command: Command, out: Output) -> CliResult<u8> {
    match command {
        Command::Create {
            dir,
            dim,
            metric,
            m,
            ef_construction,
            seed,
            index_field,
            routing,
            memory_budget,
            expected,
            storage,
            ids,
        } => {
            let mut opts = IndexOptions::new(dim, metric)
                .m(m)
                .ef_construction(ef_construction)
                .seed(seed)
                .storage(storage)
                .id_kind(ids);
            let routing = planned_routing(&opts, routing, memory_budget, expected)?;
            opts = opts.routing(routing);
            for field in &index_field {
                opts = opts.field(FieldSpec::parse(field)?);
            }
            Index::create(&dir, &opts)?.close()?;
            if routing == hnswdb::Routing::RaBitQ && dim <= 128 {
                // Measured in docs/tuning.md ("Routing at low dimension").
                eprintln!(
                    "hint: at {dim} dimensions RaBitQ's 1-bit codes route poorly (recall@10 0.80 \
                     at ef 64 on 32-d clustered data, 1.00 with sq8); prefer --routing sq8 unless \
                     the index must be larger than memory, or search with a large ef"
                );
            }
            out.emit(
                json!({"created": dir, "dim": dim, "metric": metric.name(), "m": m,
                       "ef_construction": ef_construction, "seed": seed, "ids": ids.name(),
                       "routing": routing.name()}),
                || {
                    format!(
                        "created {} (dim {dim}, {}, M {m}, ef_construction {ef_construction}, \
                         {} ids, {} routing)",
                        dir.display(),
                        metric.name(),
                        ids.name(),
                        routing.name()
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
            Some(vector) => search::lookup(&args, vector, out)?,
            None => search::benchmark(&args, out)?,
        },
        Command::Export { dir, file, ids_out } => export(&dir, &file, ids_out.as_deref(), out)?,
        Command::Stats { dir } => stats(&dir, out)?,
        Command::Delete {
            dir,
            ids,
            filter,
            missing_ok,
            relocate_above,
        } => {
            let filter = filter.as_deref().map(Filter::parse).transpose()?;
            let mut options = OpenOptions::default();
            if let Some(fraction) = relocate_above {
                options = options.relocate_above(fraction);
            }
            let index = Index::open_with(&dir, &options)?;
            let deleted = match (&filter, index.id_kind()) {
                (Some(f), _) => index.delete_where(f)?,
                (None, IdKind::Str) => index.delete_keys(&ids, missing_ok)?,
                (None, IdKind::Int) => {
                    let ids = ids_in(&index, &ids)?;
                    if missing_ok {
                        index.delete_batch_missing_ok(&ids)?
                    } else {
                        index.delete_batch(&ids)?;
                        ids.len() as u64
                    }
                }
            };
            let len = index.len();
            close_after_durable_writes(index);
            out.emit(json!({"deleted": deleted, "len": len}), || {
                format!("deleted {deleted} ids ({len} vectors left)")
            });
        }
        Command::Count { dir, filter } => {
            let filter = filter.as_deref().map(Filter::parse).transpose()?;
            let index = crate::open_for_reading(&dir)?;
            let count = index.count(filter.as_ref())?;
            out.emit(json!({"count": count}), || count.to_string());
        }
        Command::Get { dir, ids, filter } => {
            let index = crate::open_for_reading(&dir)?;
            let ids = match filter.as_deref().map(Filter::parse).transpose()? {
                Some(f) => index.ids_where(&f)?,
                None => ids_in(&index, &ids)?,
            };
            for id in ids {
                let v = index.get(id)?;
                let payload = index.get_payload(id)?;
                let shown = id_json(&index, id)?;
                out.emit(
                    json!({"id": shown, "vector": v, "payload": payload}),
                    || {
                        let text: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                        let id = shown
                            .as_str()
                            .map_or_else(|| shown.to_string(), str::to_string);
                        match &payload {
                            Some(p) => format!("{id}\t{}\t{p}", text.join(" ")),
                            None => format!("{id}\t{}", text.join(" ")),
                        }
                    },
                );
            }
        }
        Command::SetPayload {
            dir,
            id,
            payload,
            merge: _,
            replace,
        } => {
            let value: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| InputError(format!("payload is not JSON: {e}")))?;
            let index = Index::open(&dir)?;
            let internal = ids_in(&index, std::slice::from_ref(&id))?[0];
            if replace {
                index.set_payload(internal, &value)?;
            } else {
                index.merge_payloads(&[internal], std::slice::from_ref(&value))?;
            }
            let stored = index.get_payload(internal)?;
            let shown = id_json(&index, internal)?;
            close_after_durable_writes(index);
            out.emit(json!({"id": shown, "payload": stored}), || {
                format!("set the payload of {id}")
            });
        }
        Command::IndexField { dir, field } => {
            let spec = FieldSpec::parse(&field)?;
            let index = Index::open(&dir)?;
            index.create_field_index(spec.clone())?;
            index.close()?;
            out.emit(
                json!({"field": spec.name, "kind": spec.kind.name()}),
                || format!("indexed field {} ({})", spec.name, spec.kind.name()),
            );
        }
        Command::Tune { dir, target, k } => {
            let index = crate::open_for_reading(&dir)?;
            let t = index.tune(target, k)?;
            out.emit(
                json!({"ef": t.ef, "recall": t.recall, "reached": t.reached, "sample": t.sample,
                       "curve": t.curve}),
                || {
                    let curve: Vec<String> = t
                        .curve
                        .iter()
                        .map(|(ef, r)| format!("ef {ef}: {r:.4}"))
                        .collect();
                    format!(
                        "{} ef {} (recall@{k} {:.4} on {} stored vectors)\n{}",
                        if t.reached {
                            "use"
                        } else {
                            "target not reached; largest tried:"
                        },
                        t.ef,
                        t.recall,
                        t.sample,
                        curve.join("\n")
                    )
                },
            );
        }
        Command::Verify { dir, strict } => return verify(&dir, strict, out),
        Command::Checkpoint { dir } => {
            let index = Index::open(&dir)?;
            index.consolidate()?;
            out.emit(json!({"checkpointed": dir, "len": index.len()}), || {
                format!("checkpointed {} ({} vectors)", dir.display(), index.len())
            });
        }
        Command::Backup { dir, dest } => {
            // Read-only, so that it runs beside the process that writes.
            let index = crate::open_for_reading(&dir)?;
            let start = Instant::now();
            let bar =
                terminal_bar("{bar:40} {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta}");
            let bytes = index.backup_progress(&dest, &draw(&bar))?;
            bar.inspect(ProgressBar::finish_and_clear);
            let secs = start.elapsed().as_secs_f64();
            out.emit(
                json!({"backup": dest, "bytes": bytes, "len": index.len(), "seconds": secs}),
                || {
                    format!(
                        "backed up {} vectors ({:.1} MiB) to {} in {secs:.2} s",
                        index.len(),
                        bytes as f64 / (1 << 20) as f64,
                        dest.display()
                    )
                },
            );
        }
        Command::Compact { dir, relocate } => {
            let start = Instant::now();
            let index = Index::open(&dir)?;
            let (index, report) = if relocate {
                index.relocate()?
            } else {
                let bar =
                    terminal_bar("{bar:40} {pos}/{len} vectors rebuilt, {per_sec}, ETA {eta}");
                let compacted = index.compact_progress(&draw(&bar))?;
                bar.inspect(ProgressBar::finish_and_clear);
                compacted
            };
            index.close()?;
            let secs = start.elapsed().as_secs_f64();
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            out.emit(
                json!({"compacted": dir, "live": report.live, "bytes_before": report.bytes_before,
                       "bytes_after": report.bytes_after, "seconds": secs}),
                || {
                    format!(
                        "compacted {} ({} vectors): {:.1} MiB -> {:.1} MiB in {secs:.2} s",
                        dir.display(),
                        report.live,
                        mib(report.bytes_before),
                        mib(report.bytes_after)
                    )
                },
            );
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
            let mut base = hnswdb_datasets::clustered(n + queries, dim, (n / 1000).max(1), seed);
            let q = base.split_off(queries);
            hnswdb_datasets::write_fvecs(&dir.join("base.fvecs"), &base)?;
            hnswdb_datasets::write_fvecs(&dir.join("query.fvecs"), &q)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let gt = hnswdb_datasets::exact_knn(&base, &q, 100.min(n), metric, threads);
            hnswdb_datasets::write_ivecs(&dir.join("gt.ivecs"), &gt)?;
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
    }
    Ok(0)
}

/// A progress bar drawn with `template` on stderr if it is a terminal; `None` otherwise,
/// so that scripts and tests stay quiet.
fn terminal_bar(template: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(template).expect("static template"));
    Some(bar)
}

/// The engine's progress hook (`hnswdb::Progress`) moving `bar`, if there is one.
fn draw(bar: &Option<ProgressBar>) -> impl Fn(u64, u64) + Sync + '_ {
    move |done, total| {
        if let Some(bar) = bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }
}

/// Reports import progress: a bar with rate and ETA on a terminal, plain lines (about
/// every 10%) otherwise, so that logs of scripted imports stay readable.
enum Progress {
    Bar(ProgressBar),
    Lines {
        total: usize,
        done: usize,
        next_report: usize,
        start: Instant,
    },
}

impl Progress {
    fn new(total: usize) -> Progress {
        if let Some(bar) = terminal_bar("{bar:40} {pos}/{len} vectors, {per_sec}, ETA {eta}") {
            bar.set_length(total as u64);
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

    /// The hook that moves a bar through the rows of a chunk starting at row `first`.
    fn within(&self, first: usize) -> impl Fn(u64, u64) + Sync + '_ {
        move |done, _| {
            if let Progress::Bar(bar) = self {
                bar.set_position(first as u64 + done);
            }
        }
    }

    fn advance(&mut self, rows: usize) {
        match self {
            // Moved row by row as the chunk went in (`within`).
            Progress::Bar(_) => {}
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

fn import(
    dir: &Path,
    file: &Path,
    ids_from: Option<u64>,
    threads: usize,
    out: Output,
) -> CliResult {
    let (ids, data, payloads) = match VectorFormat::of_path(file)? {
        VectorFormat::Jsonl if ids_from.is_some() => {
            let text = "--ids-from numbers the rows of .fvecs and .npy files; a .jsonl row \
                        carries its own id";
            return Err(InputError(text.into()).into());
        }
        VectorFormat::Jsonl => {
            let (ids, data, payloads) = input_file(hnswdb_datasets::read_jsonl(file))?;
            let any = payloads.iter().any(|p| !p.is_null());
            (ids, data, any.then_some(payloads))
        }
        _ => {
            let data = input_file(hnswdb_datasets::read_vectors(file))?;
            let ids_from = ids_from.unwrap_or(0);
            let ids = (0..data.rows as u64)
                .map(|row| ids_from.checked_add(row).map(RowId::Int))
                .collect::<Option<Vec<RowId>>>()
                .ok_or_else(|| {
                    InputError(format!(
                        "--ids-from {ids_from} + {} rows goes past the largest id {}",
                        data.rows,
                        u64::MAX
                    ))
                })?;
            (ids, data, None)
        }
    };
    let index = Index::open_with(dir, &OpenOptions::default().threads(threads))?;
    // Rows of a file without ids are numbered from --ids-from: as keys, the numbers in
    // decimal.
    let numbered = VectorFormat::of_path(file)? != VectorFormat::Jsonl;
    let named = match index.id_kind() {
        IdKind::Str if numbered => Names::Keys(ids.iter().map(RowId::to_string).collect()),
        IdKind::Str => Names::Keys(keys_of_rows(&ids)?),
        IdKind::Int => Names::Ids(ints_of_rows(&ids)?),
    };
    let mut progress = Progress::new(data.rows);
    let start = Instant::now();
    const CHUNK: usize = 10_000;
    for first in (0..data.rows).step_by(CHUNK) {
        let rows = CHUNK.min(data.rows - first);
        let range = first..first + rows;
        let chunk = &data.data[first * data.dim..(first + rows) * data.dim];
        let payloads = payloads.as_ref().map(|p| &p[range.clone()]);
        match &named {
            Names::Keys(keys) => {
                index.insert_keys_progress(&keys[range], chunk, payloads, &progress.within(first))
            }
            Names::Ids(ids) => {
                let (threads, within) = (index.threads(), progress.within(first));
                index.insert_batch_progress(&ids[range], chunk, payloads, threads, &within)
            }
        }
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
    close_after_durable_writes(index);
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

/// The rows of an import, named as the index names them.
enum Names {
    Ids(Vec<u64>),
    Keys(Vec<String>),
}

/// Closes an index whose writes are already durable in its log. The checkpoint a close
/// runs can fail (a full disk, say) without losing them, so that failure is a warning, not
/// the command's error: the writes are reported as done, and the next open replays them.
fn close_after_durable_writes(index: Index) {
    if let Err(e) = index.close() {
        eprintln!(
            "warning: the writes are durable in the log, but the checkpoint after them failed \
             ({e}); the next open replays the log"
        );
    }
}

fn export(dir: &Path, file: &Path, ids_out: Option<&Path>, out: Output) -> CliResult {
    let format = VectorFormat::of_path(file)?;
    let index = crate::open_for_reading(dir)?;
    let ids = index.ids()?;
    let mut writer = VectorWriter::create(file, format, ids.len(), index.dim())?;
    let mut shown = Vec::with_capacity(ids.len());
    for &id in &ids {
        let name = id_out(&index, id)?;
        writer.push_with_payload(&name, &index.get(id)?, index.get_payload(id)?.as_ref())?;
        shown.push(name);
    }
    writer.finish()?;
    if let Some(path) = ids_out {
        let text: String = shown.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(path, text)?;
    }
    let positional =
        index.id_kind() == IdKind::Int && ids.iter().enumerate().all(|(i, &id)| id == i as u64);
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

fn verify(dir: &Path, strict: bool, out: Output) -> CliResult<u8> {
    let start = Instant::now();
    let index = crate::open_for_reading(dir)?;
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

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn stats(dir: &Path, out: Output) -> CliResult {
    let index = crate::open_for_reading(dir)?;
    let s = index.stats()?;
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
            json!({"len": s.len, "capacity": s.capacity, "high_water": s.high_water, "free_slots": s.free_slots, "held_slots": s.held_slots,
                   "upper_nodes": s.upper_nodes, "max_level": s.max_level, "dim": s.dim, "metric": s.metric.name(),
                   "m": s.m, "ef_construction": s.ef_construction, "kernels": s.kernels,
                   "codes_generation": s.codes_generation, "misfits": s.misfits, "routing": s.routing.name(),
                   "storage": s.storage.name(), "ids": s.id_kind.name(), "files": files})
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
            "config        dim {}, {}, M {}, ef_construction {}, {} routing, {} vectors, {} ids",
            s.dim,
            s.metric.name(),
            s.m,
            s.ef_construction,
            s.routing.name(),
            s.storage.name(),
            s.id_kind.name()
        );
        println!("kernels       {}", s.kernels);
        if s.codes_generation > 0 {
            println!(
                "search        walks on {} codes (codes.{}, {} misfits scored exactly), re-ranks exactly",
                s.routing.name(),
                s.codes_generation,
                s.misfits
            );
        } else {
            println!(
                "search        walks on exact vectors (no {} codes trained yet)",
                s.routing.name()
            );
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
    let mut data = hnswdb_datasets::clustered(n + nq, dim, (n / 400).max(1), 42);
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
        let pass = search::run_pass(&index, &queries, (10, ef), None, Some(&truth), 1)?;
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
