//! The directory fuzzer: a small valid index (a checkpoint, SQ8 codes, deletes, and
//! acknowledged writes in the log after the checkpoint) is damaged at random — a flipped
//! bit, a burst of random bytes, a truncation, a zeroed range, or a file swapped with
//! another index's — and then every read and write call runs on it. Each must give a
//! typed error or a correct answer: never a panic (caught here), a crash (which fails the
//! test binary), or an answer that disagrees with the acknowledged history while the index
//! says it is sound.
//!
//! What "correct" can mean depends on what the format checks (`docs/durability.md`,
//! "What is detected"): vector bodies and layer-0 records carry no checksum yet, so damage
//! there is allowed to change vectors and recall, never to crash. The log's last record,
//! if damaged, reads as a torn write and is dropped; a truncated log loses its tail.
//!
//! `cargo test --release --test damage` runs `HNSWDB_DAMAGE_ROUNDS` (default 300) damaged
//! directories; the long run sets it to 60,000.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

mod common;

use common::copy_dir;
use hnswdb::serde_json::{Value, json};
use hnswdb::{
    FieldKind, FieldSpec, Filter, Index, IndexOptions, Metric, OpenOptions, Query, Storage,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 8;

/// id → (vector, payload).
type Model = BTreeMap<u64, (Vec<f32>, Option<Value>)>;

fn vector(rng: &mut StdRng) -> Vec<f32> {
    let centre = rng.random_range(0..4) as f32;
    // On a grid of 1/32 (|x| < 5): at most 8 significant bits, exact in bf16 and f16 as
    // in f32, so that a 16-bit index's answers must equal the model's too.
    (0..DIM)
        .map(|_| centre + rng.random_range(-64i32..64) as f32 / 32.0)
        .collect()
}

/// Builds an index in `dir` as a crash leaves it, returning the states it went through
/// after its checkpoint: `states[0]` is the checkpointed one, `states[k]` the one after
/// the k-th write logged since.
fn template(dir: &Path, seed: u64, storage: Storage) -> Vec<Model> {
    let mut rng = StdRng::seed_from_u64(seed);
    let live = dir.with_extension("live");
    let opts = IndexOptions::new(DIM, Metric::L2)
        .storage(storage)
        .m(8)
        .ef_construction(32)
        .quantize_after(64)
        .seed(seed)
        .field(FieldSpec::new("g", FieldKind::Integer));
    let index = Index::create(&live, &opts).unwrap();
    let mut model = Model::new();
    let ids: Vec<u64> = (0..200).collect();
    let rows: Vec<Vec<f32>> = ids.iter().map(|_| vector(&mut rng)).collect();
    let payloads: Vec<Value> = ids.iter().map(|id| json!({"g": id % 5})).collect();
    index
        .insert_batch_with_payloads(&ids, &rows.concat(), &payloads, 1)
        .unwrap();
    model.extend(
        ids.iter()
            .copied()
            .zip(rows.into_iter().zip(payloads.into_iter().map(Some))),
    );
    let dead: Vec<u64> = (0..200).step_by(9).collect();
    index.delete_batch(&dead).unwrap();
    dead.iter().for_each(|id| {
        model.remove(id);
    });
    index.checkpoint().unwrap();
    let mut states = vec![model.clone()];
    for k in 0..12u64 {
        match k % 4 {
            0 => {
                let v = vector(&mut rng);
                let p = json!({"g": k % 5, "k": k});
                index.insert_with_payload(1000 + k, &v, &p).unwrap();
                model.insert(1000 + k, (v, Some(p)));
            }
            1 => {
                // A replaced vector keeps its payload.
                let v = vector(&mut rng);
                index.upsert(10 + k, &v).unwrap();
                model.get_mut(&(10 + k)).unwrap().0 = v;
            }
            2 => {
                index.delete(20 + k).unwrap();
                model.remove(&(20 + k));
            }
            _ => {
                let p = json!({"g": 4 - k % 5});
                index.set_payload(30 + k, &p).unwrap();
                model.get_mut(&(30 + k)).unwrap().1 = Some(p);
            }
        }
        states.push(model.clone());
    }
    copy_dir(&live, dir);
    drop(index);
    std::fs::remove_dir_all(&live).unwrap();
    states
}

/// Start offsets of the frames of the (only) log segment of `dir` (`docs/durability.md`).
fn frame_starts(dir: &Path) -> Vec<usize> {
    let seg = files(dir)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"));
    let bytes = std::fs::read(seg.unwrap()).unwrap();
    let (mut at, mut out) = (32, Vec::new());
    while at + 4 <= bytes.len() {
        out.push(at);
        at += u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize + 12;
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.extend(
        std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    Flip,
    Burst,
    Truncate,
    Zero,
    Swap,
}

/// Damages one file of `dir`; returns the file's name, what was done, and the byte range
/// it changed.
fn damage(
    dir: &Path,
    foreign: &Path,
    rng: &mut StdRng,
) -> (String, Damage, std::ops::Range<usize>) {
    let all = files(dir);
    let file = &all[rng.random_range(0..all.len())];
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(file).unwrap();
    let kind = [
        Damage::Flip,
        Damage::Burst,
        Damage::Truncate,
        Damage::Zero,
        Damage::Swap,
    ][rng.random_range(0..5)];
    let at = if bytes.is_empty() {
        0
    } else {
        rng.random_range(0..bytes.len())
    };
    let len = bytes.len();
    let mut range = at..(at + 1).min(len);
    match kind {
        Damage::Flip if !bytes.is_empty() => bytes[at] ^= 1 << rng.random_range(0..8),
        Damage::Burst => {
            range = at..(at + 64).min(len);
            bytes[range.clone()]
                .iter_mut()
                .for_each(|b| *b = rng.random());
        }
        Damage::Truncate => {
            bytes.truncate(at);
            range = at..len;
        }
        Damage::Zero => {
            range = at..(at + rng.random_range(1..8192)).min(len);
            bytes[range.clone()].fill(0);
        }
        Damage::Swap => {
            // The same file of another index (for a log segment, its only segment).
            let theirs = if file.parent().unwrap().ends_with("wal") {
                files(foreign)
                    .into_iter()
                    .find(|p| p.parent().unwrap().ends_with("wal"))
            } else {
                Some(foreign.join(&name)).filter(|p| p.exists())
            };
            if let Some(theirs) = theirs {
                bytes = std::fs::read(theirs).unwrap();
                range = 0..len;
            }
        }
        Damage::Flip => {}
    }
    std::fs::write(file, &bytes).unwrap();
    (name, kind, range)
}

/// What the index answers, all of it: ids, vectors, and searches checked against the
/// vectors it returned. Any error ends the exam (typed errors are allowed).
fn examine(index: &Index, rng: &mut StdRng) -> hnswdb::Result<Model> {
    index.stats()?;
    let ids = index.ids()?;
    let mut seen = Model::new();
    for id in ids {
        seen.insert(id, (index.get(id)?, index.get_payload(id)?));
    }
    let low = Filter::lte("g", 1);
    for round in 0..6 {
        let q = vector(rng);
        let hits = if round % 2 == 0 {
            index.search(&q, 10)?
        } else {
            index.search_with(&q, &Query::new(10).filter(&low))?
        };
        for hit in hits {
            // Every answer is a live id, at the distance of the vector `get` returns,
            // and admitted by the filter by the payload `get_payload` returns.
            let (v, p) = seen
                .get(&hit.id)
                .expect("search returned an id that ids() does not list");
            if round % 2 == 1 {
                let g = p.as_ref().and_then(|p| p["g"].as_u64());
                assert!(
                    g.is_some_and(|g| g <= 1),
                    "filtered search returned id {} with payload {p:?}",
                    hit.id
                );
            }
            let d: f32 = v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
            assert!(
                (d - hit.distance).abs() <= 1e-3 * d.max(1.0),
                "id {} at distance {} but its vector is at {d}",
                hit.id,
                hit.distance
            );
        }
    }
    Ok(seen)
}

/// One damaged directory: runs every call and checks the answers. Returns how the open
/// went, for the tally.
fn one(
    template: &Path,
    foreign: &Path,
    states: &[Model],
    work: &Path,
    rng: &mut StdRng,
) -> (String, &'static str) {
    let dir = work.join("idx");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    copy_dir(template, &dir);
    let log_frames = frame_starts(&dir);
    let (file, kind, range) = damage(&dir, foreign, rng);
    let context = format!("{file} {kind:?}");
    let file_kind = match file.as_str() {
        f if f.ends_with(".log") => "wal".to_string(),
        f if f.starts_with("codes.") => "codes".to_string(),
        f => f.to_string(),
    };
    let outcome = match Index::open(&dir) {
        Err(_) => {
            // Salvage must not crash either; its answers are whatever it kept.
            if let Ok(index) = Index::open_with(&dir, &OpenOptions::default().salvage(true)) {
                let _ = examine(&index, rng);
            }
            "refused"
        }
        Ok(index) => {
            let sound = index.verify().map(|r| r.is_ok()).unwrap_or(false);
            let seen = examine(&index, rng);
            // Whatever answered must be right. The one exception is damage to meta.redb
            // that remaps ids among live slots in a file its seal vouches for: reads cannot
            // see it (redb checks its pages only for a changed file, or when it repairs),
            // `verify` does.
            if let Ok(seen) = &seen
                && (sound || file != "meta.redb")
            {
                let last = states.len() - 1;
                let allowed: &[Model] = if file.ends_with(".log") {
                    // Damage that reaches into the last record has nothing valid after it:
                    // it reads as a torn write, and the records from the first one it
                    // touched on are dropped as such. Any other damage must be refused.
                    let first = log_frames.iter().filter(|&&s| s <= range.start).count();
                    let reaches_last = log_frames.last().is_some_and(|&s| range.end > s);
                    if reaches_last {
                        &states[first.saturating_sub(1)..]
                    } else {
                        &states[last..]
                    }
                } else {
                    &states[last..]
                };
                assert!(
                    allowed.contains(seen),
                    "{context}: the index answered with {} ids (verify: {sound}) that no \
                     acknowledged state had",
                    seen.len()
                );
            }
            // Writes on whatever opened: typed errors allowed, no crash.
            let _ = index.insert(5000, &vector(rng));
            let _ = index.delete(1);
            let _ = index.checkpoint();
            drop(index);
            if let Ok(again) = Index::open(&dir) {
                let _ = examine(&again, rng);
            }
            if sound {
                "opened, verify ok"
            } else {
                "opened, verify found problems"
            }
        }
    };
    (file_kind, outcome)
}

#[test]
fn damaged_directories_give_typed_errors_or_correct_answers() {
    damaged_directories(Storage::F32, 300);
}

#[test]
fn damaged_f16_directories_give_typed_errors_or_correct_answers() {
    damaged_directories(Storage::F16, 100);
}

#[test]
fn damaged_bf16_directories_give_typed_errors_or_correct_answers() {
    damaged_directories(Storage::BF16, 100);
}

/// `rounds` damaged copies (`HNSWDB_DAMAGE_ROUNDS` overrides) of an index storing its
/// vectors as `storage`.
fn damaged_directories(storage: Storage, rounds: usize) {
    let rounds: usize = std::env::var("HNSWDB_DAMAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(rounds);
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let states = template(&pristine, 1, storage);
    let foreign = root.path().join("foreign");
    template(&foreign, 2, storage);
    let mut rng = StdRng::seed_from_u64(
        std::env::var("HNSWDB_DAMAGE_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(7),
    );
    let mut tally: BTreeMap<(String, &str), usize> = BTreeMap::new();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for round in 0..rounds {
        let mut round_rng = StdRng::seed_from_u64(rng.random());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            one(&pristine, &foreign, &states, &work, &mut round_rng)
        }));
        match outcome {
            Ok(o) => *tally.entry(o).or_default() += 1,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("round {round}: a call panicked: {why}");
            }
        }
    }
    eprintln!(
        "damaged {} directories: {rounds}, 0 panics, 0 wrong answers",
        storage.name()
    );
    for ((file, outcome), n) in &tally {
        eprintln!("  {file:<10} {outcome:<30} {n}");
    }
}

/// One way of damaging `meta.redb` for the census.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MetaDamage {
    Truncate,
    ZeroRange,
    ZeroPage,
    FlipBits,
    Burst,
}

/// Damages `path` (a `meta.redb`) one way at random; returns how.
fn damage_meta(path: &Path, rng: &mut StdRng) -> MetaDamage {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let kind = [
        MetaDamage::Truncate,
        MetaDamage::ZeroRange,
        MetaDamage::ZeroPage,
        MetaDamage::FlipBits,
        MetaDamage::Burst,
    ][rng.random_range(0..5)];
    let at = rng.random_range(0..len);
    match kind {
        MetaDamage::Truncate => bytes.truncate(at),
        MetaDamage::ZeroRange => bytes[at..(at + rng.random_range(1..8192)).min(len)].fill(0),
        MetaDamage::ZeroPage => {
            let page = at / 4096 * 4096;
            bytes[page..(page + 4096).min(len)].fill(0);
        }
        MetaDamage::FlipBits => {
            for _ in 0..rng.random_range(1..=8) {
                bytes[rng.random_range(0..len)] ^= 1 << rng.random_range(0..8);
            }
        }
        MetaDamage::Burst => bytes[at..(at + 64).min(len)]
            .iter_mut()
            .for_each(|b| *b = rng.random()),
    }
    std::fs::write(path, &bytes).unwrap();
    kind
}

/// Seals `meta` as it is now: damage the seal cannot see, as a medium's own decay would be.
#[cfg(feature = "failpoints")]
fn seal_as_is(meta: &Path) {
    hnswdb::failpoints::seal_metadata(meta);
}

#[cfg(not(feature = "failpoints"))]
fn seal_as_is(_: &Path) {
    panic!("HNSWDB_CENSUS_RESEAL needs --features hnswdb/failpoints");
}

/// Every panic any thread raised, as "file:line: message": the census hook's record.
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records every panic, then hands it on to the hook that was in place (so that the
/// library's own handling of a panic it catches still runs).
fn record_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map_or("?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
        let why = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        PANICS.lock().unwrap().push(format!("{at}: {why}"));
        previous(info);
    }));
}

/// The census of issue 23: `HNSWDB_CENSUS_ROUNDS` (default 200) copies of an index whose
/// `meta.redb` is damaged, each opened read-write and read-only and used (reads, verify,
/// writes, a checkpoint, a reopen); counts the copies on which anything panicked inside
/// redb (caught or not), by damage and by where. `HNSWDB_CENSUS_RESEAL` seals each damaged
/// file as it is, so that the damage is invisible to the seal. Run alone (the hook is process-wide):
/// `cargo test --release --test damage meta_redb_census -- --ignored --nocapture`.
#[test]
#[ignore]
fn meta_redb_census() {
    let rounds: usize = std::env::var("HNSWDB_CENSUS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let reseal = std::env::var_os("HNSWDB_CENSUS_RESEAL").is_some();
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    template(&pristine, 1, Storage::F32);
    record_panics();
    let mut rng = StdRng::seed_from_u64(23);
    let mut by_kind: BTreeMap<(MetaDamage, bool), usize> = BTreeMap::new();
    let mut by_place: BTreeMap<String, usize> = BTreeMap::new();
    let dir = root.path().join("idx");
    for _ in 0..rounds {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        copy_dir(&pristine, &dir);
        let kind = damage_meta(&dir.join("meta.redb"), &mut rng);
        if reseal {
            seal_as_is(&dir.join("meta.redb"));
        }
        PANICS.lock().unwrap().clear();
        let mut round_rng = StdRng::seed_from_u64(rng.random());
        if let Ok(index) = Index::open_read_only(&dir) {
            let _ = examine(&index, &mut round_rng);
        }
        if let Ok(index) = Index::open(&dir) {
            let _ = index.verify();
            let _ = examine(&index, &mut round_rng);
            let _ = index.insert(5000, &vector(&mut round_rng));
            let _ = index.checkpoint();
            drop(index);
            if let Ok(again) = Index::open(&dir) {
                let _ = examine(&again, &mut round_rng);
            }
        }
        let panics = std::mem::take(&mut *PANICS.lock().unwrap());
        let in_redb: Vec<&String> = panics.iter().filter(|p| p.contains("/redb-")).collect();
        assert_eq!(
            panics.len(),
            in_redb.len(),
            "{kind:?}: a panic outside redb: {panics:?}"
        );
        *by_kind.entry((kind, !in_redb.is_empty())).or_default() += 1;
        if let Some(first) = in_redb.first() {
            let place = first.split(": ").next().unwrap_or("?");
            let place = &place[place.find("/redb-").unwrap_or(0)..];
            *by_place
                .entry(format!(
                    "{place}: {}",
                    &first[first.len().min(first.find(": ").map_or(0, |i| i + 2))..]
                ))
                .or_default() += 1;
        }
    }
    let panicked: usize = by_kind
        .iter()
        .filter(|((_, p), _)| *p)
        .map(|(_, n)| n)
        .sum();
    eprintln!("meta.redb damaged {rounds} times: {panicked} copies panicked inside redb");
    for ((kind, p), n) in &by_kind {
        eprintln!(
            "  {kind:<10?} {:<16} {n}",
            if *p { "panicked" } else { "no panic" }
        );
    }
    for (place, n) in &by_place {
        eprintln!("  {n:>4}  {place}");
    }
}

#[test]
fn a_missing_page_file_is_corruption_not_an_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let built = tmp.path().join("built");
    Index::create(&built, &IndexOptions::new(DIM, Metric::L2))
        .unwrap()
        .close()
        .unwrap();
    for file in ["vectors", "graph0"] {
        let copy = tmp.path().join(file);
        copy_dir(&built, &copy);
        std::fs::remove_file(copy.join(file)).unwrap();
        for read_only in [false, true] {
            let options = OpenOptions::default().read_only(read_only);
            match Index::open_with(&copy, &options) {
                Err(hnswdb::Error::Corrupt { .. }) => {}
                other => panic!("{file} missing, read-only {read_only}: {:?}", other.err()),
            }
        }
    }
}
