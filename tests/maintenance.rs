//! Maintenance (backup, compaction, verify, stats, refresh) on every kind of index `create`
//! can make: SQ8 or RaBitQ routing, f32 or f16 vectors, with or without payload field
//! indexes, after deletes; on a full disk; killed midway; beside writers in other
//! processes. (The command line's `export` and the commands themselves: cli/tests.)

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::workload::{Model, snapshot};
use common::{copy_dir, spawn_child};
use hnswdb::serde_json::{Value, json};
use hnswdb::{Error, FieldKind, FieldSpec, Filter, Index, IndexOptions, Metric, Query};
use hnswdb::{Routing, Storage};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const DIM: usize = 16;
const N: u64 = 400;

/// One kind of index.
#[derive(Clone, Copy, Debug)]
struct Kind {
    routing: Routing,
    storage: Storage,
    fields: bool,
}

fn kinds() -> Vec<Kind> {
    let mut kinds = Vec::new();
    for routing in [Routing::Sq8, Routing::RaBitQ] {
        for storage in [Storage::F32, Storage::F16] {
            for fields in [false, true] {
                kinds.push(Kind {
                    routing,
                    storage,
                    fields,
                });
            }
        }
    }
    kinds
}

/// On a grid of 1/256 below 4: exact in f16, so every kind must return it bit for bit.
fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((id * 131 + j * 17) % 1009) as f32 / 256.0)
        .collect()
}

/// `tag` is indexed after the payloads were written, one in five of them without it.
fn payload(id: u64) -> Value {
    match id % 3 {
        0 => Value::Null,
        _ if id.is_multiple_of(5) => json!({"g": id % 4, "other": id}),
        _ => json!({"g": id % 4, "tag": format!("t{}", id % 2)}),
    }
}

/// Builds an index of `kind` in `dir` and returns what it holds: N vectors, quantised,
/// two thirds with payloads, a third deleted, some payloads changed; with `fields`, `g`
/// indexed from the start and `tag` indexed after the payloads.
fn build(dir: &Path, kind: Kind) -> Model {
    let mut options = IndexOptions::new(DIM, Metric::L2)
        .m(8)
        .ef_construction(32)
        .threads(2)
        .routing(kind.routing)
        .storage(kind.storage)
        .quantize_after(100);
    if kind.fields {
        options = options.field(FieldSpec::new("g", FieldKind::Integer));
    }
    let index = Index::create(dir, &options).unwrap();
    let ids: Vec<u64> = (0..N).collect();
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id)).collect();
    let payloads: Vec<Value> = ids.iter().map(|&id| payload(id)).collect();
    index
        .insert_batch_with_payloads(&ids, &rows, &payloads, 2)
        .unwrap();
    let dead: Vec<u64> = ids.iter().copied().filter(|id| id % 3 == 1).collect();
    index.delete_batch(&dead).unwrap();
    index
        .set_payload(2, &json!({"g": 3, "changed": true}))
        .unwrap();
    if kind.fields {
        index
            .create_field_index(FieldSpec::new("tag", FieldKind::Keyword))
            .unwrap();
    }
    let model = snapshot(&index).unwrap();
    index.close().unwrap();
    assert_eq!(model.len() as u64, N - dead.len() as u64);
    model
}

/// `index` holds `model`, verifies, is of `kind`, and its filters still work.
fn assert_holds(index: &Index, model: &Model, kind: Kind, what: &str) {
    assert_eq!(&snapshot(index).unwrap(), model, "{kind:?}: {what}");
    assert!(index.verify().unwrap().is_ok(), "{kind:?}: {what}");
    let stats = index.stats().unwrap();
    assert_eq!(
        (stats.len, stats.routing, stats.storage),
        (model.len() as u64, kind.routing, kind.storage),
        "{kind:?}: {what}"
    );
    let &id = model.keys().nth(model.len() / 2).unwrap();
    assert_eq!(index.search(&vector(id), 1).unwrap()[0].id, id);
    if kind.fields {
        let t1 = |p: &Option<Value>| p.as_ref().is_some_and(|p| p["tag"] == "t1");
        let want = model.values().filter(|(_, p)| t1(p)).count() as u64;
        let t1_filter = Filter::eq("tag", "t1");
        let query = Query::new(1).filter(&t1_filter);
        assert_eq!(
            index.explain(&query).unwrap().matching,
            want,
            "{kind:?}: {what}"
        );
        assert_eq!(index.fields().len(), 2, "{kind:?}: {what}");
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_maintenance_operation_works_on_every_kind() {
    for kind in kinds() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("idx");
        let model = build(&dir, kind);
        // A view opened before: backed up from (as the command line does), then refreshed
        // across the compaction.
        let view = Index::open_read_only(&dir).unwrap();
        assert_holds(&view, &model, kind, "read-only view");
        view.backup(root.path().join("from-view")).unwrap();
        let (index, report) = Index::open(&dir).unwrap().compact().unwrap();
        assert_eq!(report.live, model.len() as u64);
        assert_eq!(index.stats().unwrap().high_water as usize, model.len());
        assert_holds(&index, &model, kind, "compacted");
        index.backup(root.path().join("from-compacted")).unwrap();
        view.refresh().unwrap();
        assert_holds(&view, &model, kind, "view refreshed after the compaction");
        drop((index, view));
        assert_holds(&Index::open(&dir).unwrap(), &model, kind, "reopened");
        for copy in ["from-view", "from-compacted"] {
            let copy = Index::open_read_only(root.path().join(copy)).unwrap();
            assert_holds(&copy, &model, kind, "backup");
        }
        assert_eq!(
            names(root.path()),
            ["from-compacted", "from-view", "idx"],
            "{kind:?}: nothing left beside"
        );
    }
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_path_buf()))
}

/// Fills the file system of `at` (a file named `ballast`) but for `leave` bytes.
fn fill_but(at: &Path, leave: u64) {
    use std::io::Write;
    let path = at.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 64 << 10];
    let mut written = 0u64;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    file.set_len(written.saturating_sub(leave)).unwrap();
}

/// A backup or compaction on a disk too full for it fails with `DiskFull` (a backup's
/// naming a file under its destination), leaves nothing behind, changes nothing, and
/// works once space is freed. The free space left (2% to 16% of the index) varies by
/// kind, so that the disk fills at different steps.
#[test]
fn a_full_disk_fails_cleanly_and_loses_nothing() {
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for (round, kind) in kinds().into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(_mount) = mount_tmpfs(tmp.path(), "16m") else {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        };
        let dir = tmp.path().join("idx");
        let model = build(&dir, kind);
        let index_bytes = du(&dir);
        fill_but(tmp.path(), index_bytes * (round as u64 + 1) / 50);
        let dest = tmp.path().join("bk");
        let index = Index::open(&dir).unwrap();
        match index.backup(&dest) {
            Err(Error::DiskFull { path }) => {
                assert!(path.starts_with(&dest), "{kind:?}: names {path:?}")
            }
            other => panic!("{kind:?}: backup on a full disk: {other:?}"),
        }
        // A compaction may still fit (it writes only the live vectors); if not, it fails
        // with nothing else than `DiskFull`.
        let compacted = match index.compact() {
            Ok(_) => "compacted",
            Err(Error::DiskFull { .. }) => "compaction: disk full",
            Err(e) => panic!("{kind:?}: compaction on a full disk: {e}"),
        };
        *outcomes.entry(compacted).or_default() += 1;
        assert_eq!(names(tmp.path()), ["ballast", "idx"], "{kind:?}");
        let index = Index::open(&dir).unwrap();
        assert_holds(&index, &model, kind, "after the failures");
        std::fs::remove_file(tmp.path().join("ballast")).unwrap();
        index.backup(&dest).unwrap();
        let (index, _) = index.compact().unwrap();
        assert_holds(&index, &model, kind, "compacted once space was freed");
        assert_holds(
            &Index::open_read_only(&dest).unwrap(),
            &model,
            kind,
            "backup once space was freed",
        );
    }
    eprintln!("full disk: {outcomes:?}");
    assert!(outcomes.contains_key("compaction: disk full"));
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            match e.file_type().unwrap().is_dir() {
                true => du(&e.path()),
                false => e.metadata().unwrap().len(),
            }
        })
        .sum()
}

/// Set in a child's environment: `backup` or `compact`, then the index directory.
const CHILD_ENV: &str = "HNSWDB_MAINTENANCE_CHILD";

#[test]
#[ignore = "the child process of maintenance_killed_midway_leaves_a_whole_index"]
fn maintenance_child() {
    let Ok(task) = std::env::var(CHILD_ENV) else {
        eprintln!("maintenance_child is a child process, not a test on its own");
        return;
    };
    let (op, dir) = task.split_once(';').unwrap();
    let index = Index::open(dir).unwrap();
    match op {
        "backup" => index.backup(Path::new(dir).with_file_name("bk")).map(drop),
        _ => index.compact().map(drop),
    }
    .unwrap();
}

/// A backup or compaction killed at a random moment: the index holds what it held, and
/// the backup's destination is absent or a whole copy; any staging directory left
/// behind (a killed process removes nothing) stands in the way of no later backup or
/// compaction.
#[test]
fn maintenance_killed_midway_leaves_a_whole_index() {
    let mut rng = StdRng::seed_from_u64(23);
    let root = tempfile::tempdir().unwrap();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (round, kind) in kinds().into_iter().enumerate() {
        let pristine = root.path().join(format!("pristine{round}"));
        let model = build(&pristine, kind);
        for op in ["backup", "compact"] {
            let work = root.path().join(format!("{op}{round}"));
            let dir = work.join("idx");
            copy_dir(&pristine, &dir);
            let mut child = spawn_child(
                "maintenance_child",
                CHILD_ENV,
                format!("{op};{}", dir.display()),
            );
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
            child.kill().unwrap();
            let finished = child.wait().unwrap().success();
            let index = Index::open(&dir).unwrap();
            assert_holds(&index, &model, kind, &format!("{op} killed"));
            let dest = work.join("bk");
            let backed_up = dest.exists();
            if backed_up {
                let copy = Index::open(&dest).unwrap();
                assert_holds(&copy, &model, kind, "backup of a killed run");
                drop(copy);
                std::fs::remove_dir_all(&dest).unwrap();
            }
            index.backup(&dest).unwrap();
            index.compact().unwrap();
            *outcomes
                .entry(format!(
                    "{op}: finished {finished}, backup there {backed_up}"
                ))
                .or_default() += 1;
        }
    }
    eprintln!("kills: {outcomes:?}");
}

/// Set in a writer child's environment: the index directory.
const WRITER_ENV: &str = "HNSWDB_MAINTENANCE_WRITER";
const ACK: &str = "acked ";

#[test]
#[ignore = "the child process of writes_from_another_process_survive_compactions"]
fn writer_child() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        eprintln!("writer_child is a child process, not a test on its own");
        return;
    };
    let dir = Path::new(&dir);
    let stop = dir.with_file_name("stop");
    let mut rounds = 0u64;
    while !stop.exists() {
        match Index::open(dir) {
            Ok(index) => {
                write_round(&index, rounds).unwrap();
                index.close().unwrap();
                println!("{ACK}{rounds}");
                rounds += 1;
            }
            Err(Error::Locked(_)) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("a writable open beside compactions: {e}"),
        }
        // Every acknowledged write is there, at any moment, for any reader.
        let view = Index::open_read_only(dir).unwrap();
        let mine: Model = snapshot(&view).unwrap().split_off(&N);
        assert_eq!(mine, writer_model(rounds), "after {rounds} rounds");
    }
}

/// Round `r` of the writer: an insert of two ids, a delete of one from the round before
/// and a change of the other's payload.
fn write_round(index: &Index, r: u64) -> hnswdb::Result<()> {
    let ids = [N + 2 * r, N + 2 * r + 1];
    let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id)).collect();
    let round = json!({ "round": r });
    index.insert_batch_with_payloads(&ids, &rows, &[round.clone(), round], 1)?;
    if r > 0 {
        index.delete(N + 2 * r - 1)?;
        index.set_payload(N + 2 * r - 2, &json!({ "changed": r }))?;
    }
    Ok(())
}

/// What `rounds` rounds of the writer leave.
fn writer_model(rounds: u64) -> Model {
    let mut model = Model::new();
    for r in 0..rounds {
        for id in [N + 2 * r, N + 2 * r + 1] {
            model.insert(id, (vector(id), Some(json!({ "round": r }))));
        }
        if r > 0 {
            model.remove(&(N + 2 * r - 1));
            model.get_mut(&(N + 2 * r - 2)).unwrap().1 = Some(json!({ "changed": r }));
        }
    }
    model
}

/// Another process opens the index for writing, writes, and closes, again and again,
/// while this one compacts it: each of its opens either gets `Error::Locked` or writes
/// for good; no acknowledged write is lost to a compaction, and no open (writable or
/// not) finds a half-swapped index.
#[test]
fn writes_from_another_process_survive_compactions() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let mut model = build(&dir, kinds()[3]);
    let mut child = spawn_child("writer_child", WRITER_ENV, &dir);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut compactions, mut rounds) = (0, 0);
    while compactions < 12 {
        match Index::open(&dir) {
            Ok(index) => {
                index.compact().unwrap();
                compactions += 1;
                // Let the writer in between compactions.
                let acked = lines
                    .by_ref()
                    .map(Result::unwrap)
                    .find(|l| l.starts_with(ACK));
                assert!(acked.is_some(), "the writer stopped");
                rounds += 1;
            }
            Err(Error::Locked(_)) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
    std::fs::write(root.path().join("stop"), b"").unwrap();
    rounds += lines
        .map(Result::unwrap)
        .filter(|l| l.starts_with(ACK))
        .count() as u64;
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the writer failed: {stderr}");
    model.extend(writer_model(rounds));
    let index = Index::open(&dir).unwrap();
    assert_eq!(snapshot(&index).unwrap(), model, "after {rounds} rounds");
    assert!(index.verify().unwrap().is_ok());
}

/// Backups to destinations that an extension-based staging name would confuse (`D.1`,
/// `D.2`), of two different indexes at once: each destination holds its own index.
#[test]
fn simultaneous_backups_to_sibling_destinations_keep_apart() {
    let root = tempfile::tempdir().unwrap();
    let kind = kinds()[0];
    let a = root.path().join("a");
    let b = root.path().join("b");
    let model_a = build(&a, kind);
    let model_b = build(&b, kind);
    let index_b = Index::open(&b).unwrap();
    index_b.delete_batch(&[0, 3, 6]).unwrap();
    let model_b_now = snapshot(&index_b).unwrap();
    assert_ne!(model_b_now, model_b);
    let index_a = Index::open(&a).unwrap();
    for round in 0..6 {
        let (d1, d2) = (root.path().join("D.1"), root.path().join("D.2"));
        std::thread::scope(|s| {
            s.spawn(|| index_a.backup(&d1).unwrap());
            s.spawn(|| index_b.backup(&d2).unwrap());
        });
        let copy1 = Index::open_read_only(&d1).unwrap();
        let copy2 = Index::open_read_only(&d2).unwrap();
        assert_eq!(snapshot(&copy1).unwrap(), model_a, "round {round}");
        assert_eq!(snapshot(&copy2).unwrap(), model_b_now, "round {round}");
        drop((copy1, copy2));
        std::fs::remove_dir_all(&d1).unwrap();
        std::fs::remove_dir_all(&d2).unwrap();
    }
    assert_eq!(names(root.path()), ["a", "b"]);
}

/// A destination inside the index's directory (directly, under `wal/`, through `..` or
/// a symbolic link) is refused with a typed error before anything is written; later
/// backups work.
#[test]
fn a_backup_inside_the_index_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("idx");
    let kind = kinds()[7];
    let model = build(&dir, kind);
    std::os::unix::fs::symlink(&dir, root.path().join("link")).unwrap();
    let index = Index::open(&dir).unwrap();
    let before = (names(&dir), names(&dir.join("wal")));
    for dest in [
        dir.join("bk"),
        dir.join("sub/bk"),
        dir.join("wal/bk"),
        root.path().join("idx/../idx/bk"),
        root.path().join("link/bk"),
    ] {
        match index.backup(&dest) {
            Err(Error::InvalidOption(why)) => assert!(why.contains("inside"), "{why}"),
            other => panic!("backup into {dest:?}: {other:?}"),
        }
        assert_eq!((names(&dir), names(&dir.join("wal"))), before);
    }
    let dest = root.path().join("bk");
    index.backup(&dest).unwrap();
    assert_holds(&Index::open(&dest).unwrap(), &model, kind, "backup");
    assert_eq!(names(root.path()), ["bk", "idx", "link"]);
}
