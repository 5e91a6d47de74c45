//! The maintenance commands (`backup`, `compact`, `verify`, `stats`, `export`) on every
//! kind of index `create` makes, and beside other commands that write: a write that
//! exits 0 is never lost to a compaction, and one that meets it exits 4 (locked).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

fn hnswdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hnswdb"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = hnswdb(args);
    assert!(
        out.status.success(),
        "hnswdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// On a grid of 1/4 below 16: exact in f16 and bf16.
fn vector(id: u64) -> Vec<f32> {
    (0..4)
        .map(|j| ((id * 7 + j * 3) % 64) as f32 / 4.0)
        .collect()
}

/// id → (vector, payload) as `export` to .jsonl writes it.
type Rows = BTreeMap<u64, (Vec<f32>, Option<Value>)>;

/// What a command that exited 0 did to the rows.
type Effect = Box<dyn Fn(&mut Rows)>;

/// Rows 0..300; `tag` is a list in every fifth payload (the keyword index it gets
/// afterwards indexes each element).
fn rows() -> Rows {
    (0..300u64)
        .map(|id| {
            let tag = match id % 5 {
                0 => json!([format!("t{}", id % 2), format!("n{id}")]),
                _ => json!(format!("t{}", id % 2)),
            };
            (id, (vector(id), Some(json!({"g": id % 4, "tag": tag}))))
        })
        .collect()
}

fn write_jsonl(path: &Path, rows: &Rows) {
    let text: String = rows
        .iter()
        .map(|(id, (v, p))| format!("{}\n", json!({"id": id, "vector": v, "payload": p})))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn exported(index: &Path, to: &Path) -> Rows {
    ok(&["export", s(index), s(to)]);
    std::fs::read_to_string(to)
        .unwrap()
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let v = row["vector"].as_array().unwrap();
            let v = v.iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let p = row.get("payload").cloned();
            (row["id"].as_u64().unwrap(), (v, p))
        })
        .collect()
}

fn stats(index: &Path) -> Value {
    serde_json::from_str(&ok(&["--json", "stats", s(index)])).unwrap()
}

#[test]
fn every_maintenance_command_on_every_kind() {
    for routing in ["sq8", "rabitq", "rabitq:4"] {
        for storage in ["f32", "f16", "bf16"] {
            for fields in [false, true] {
                let kind = format!("{routing} {storage} fields {fields}");
                let tmp = tempfile::tempdir().unwrap();
                let idx = tmp.path().join("idx");
                let mut create = vec!["create", s(&idx), "--dim", "4", "--metric", "l2"];
                create.extend(["--routing", routing, "--storage", storage]);
                if fields {
                    create.extend(["--index-field", "g:int"]);
                }
                ok(&create);
                let mut rows = rows();
                let input = tmp.path().join("in.jsonl");
                write_jsonl(&input, &rows);
                ok(&["import", s(&idx), s(&input)]);
                let dead: Vec<String> = (0..300).step_by(3).map(|id| id.to_string()).collect();
                let mut delete = vec!["delete", s(&idx)];
                delete.extend(dead.iter().map(String::as_str));
                ok(&delete);
                rows.retain(|id, _| id % 3 != 0);
                if fields {
                    ok(&["index-field", s(&idx), "tag:keyword"]);
                }
                let out = tmp.path().join("out.jsonl");
                let bk = tmp.path().join("bk");
                ok(&["backup", s(&idx), s(&bk)]);
                // The indexes with fields are compacted by relocation (the graph copied).
                match fields {
                    true => ok(&["compact", s(&idx), "--relocate"]),
                    false => ok(&["compact", s(&idx)]),
                };
                for dir in [&idx, &bk] {
                    ok(&["verify", s(dir)]);
                    assert_eq!(exported(dir, &out), rows, "{kind}: {dir:?}");
                    let st = stats(dir);
                    assert_eq!(st["len"], rows.len(), "{kind}");
                    assert_eq!(
                        (st["routing"].as_str(), st["storage"].as_str()),
                        (Some(routing), Some(storage)),
                        "{kind}"
                    );
                    // The text form names the routing the index walks on, not always SQ8.
                    let text = ok(&["stats", s(dir)]);
                    let search = text.lines().find(|l| l.starts_with("search")).unwrap();
                    assert!(search.contains(routing), "{kind}: {search}");
                }
                assert_eq!(stats(&idx)["high_water"], rows.len(), "{kind}: compacted");
            }
        }
    }
}

#[test]
fn delete_relocates_once_enough_slots_are_free() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    ok(&["create", s(&idx), "--dim", "4", "--metric", "l2"]);
    let mut rows: Rows = (0..2000u64).map(|id| (id, (vector(id), None))).collect();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    ok(&["import", s(&idx), s(&input)]);
    let delete = |ids: std::ops::Range<u64>, extra: &[&str]| {
        let ids: Vec<String> = ids.map(|id| id.to_string()).collect();
        let mut args = vec!["delete", s(&idx)];
        args.extend(ids.iter().map(String::as_str));
        args.extend(extra);
        ok(&args);
    };
    // 15% free, relocation turned off: the holes stay.
    delete(0..300, &["--relocate-above", "1"]);
    assert_eq!(stats(&idx)["high_water"], 2000);
    // Past the default 10%: this delete's close relocates.
    delete(300..310, &[]);
    rows.retain(|&id, _| id >= 310);
    let st = stats(&idx);
    assert_eq!(
        (&st["high_water"], &st["free_slots"]),
        (&json!(1690), &json!(0))
    );
    ok(&["verify", s(&idx)]);
    assert_eq!(exported(&idx, &tmp.path().join("out.jsonl")), rows);
}

/// `import`, `delete` and `set-payload` run again and again while `compact` (with and
/// without `--relocate`) does: each
/// either exits 0, and its write is there at the end, or exits 4 (another writer has the
/// index) and changed nothing (then it is retried).
#[test]
fn writes_beside_compactions_are_kept_or_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    ok(&["create", s(&idx), "--dim", "4", "--metric", "l2"]);
    let mut rows = rows();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, &rows);
    ok(&["import", s(&idx), s(&input)]);
    let mut locked = 0;
    let writing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        // Compacts until the writes are done, rebuilding and relocating in turn; returns
        // how many compactions ran.
        let compactor = scope.spawn(|| {
            let mut compacted = 0;
            for turn in 0.. {
                if !writing.load(Ordering::Acquire) {
                    break;
                }
                // A pause, so that the writes are not starved of the lock.
                std::thread::sleep(std::time::Duration::from_millis(50));
                let out = match turn % 2 {
                    0 => hnswdb(&["compact", s(&idx)]),
                    _ => hnswdb(&["compact", s(&idx), "--relocate"]),
                };
                match out.status.code() {
                    Some(0) => compacted += 1,
                    Some(4) => {}
                    _ => panic!("compact: {}", String::from_utf8_lossy(&out.stderr)),
                }
            }
            compacted
        });
        for round in 0..15u64 {
            let id = 1000 + round;
            let one = tmp.path().join(format!("one{round}.jsonl"));
            let row: Rows = [(id, (vector(id), Some(json!({"round": round}))))].into();
            write_jsonl(&one, &row);
            let payload = json!({"changed": round}).to_string();
            let (victim, changed) = (round.to_string(), (100 + round).to_string());
            let writes: [(Vec<&str>, Effect); 3] = [
                (
                    vec!["import", s(&idx), s(&one)],
                    Box::new(move |rows| rows.extend(row.clone())),
                ),
                (
                    vec!["delete", s(&idx), &victim],
                    Box::new(move |rows| drop(rows.remove(&round))),
                ),
                (
                    vec!["set-payload", s(&idx), &changed, &payload, "--replace"],
                    Box::new(move |rows| {
                        rows.get_mut(&(100 + round)).unwrap().1 = Some(json!({"changed": round}))
                    }),
                ),
            ];
            for (args, effect) in writes {
                // Retried until it gets in between two compactions.
                loop {
                    let out = hnswdb(&args);
                    match out.status.code() {
                        Some(0) => break effect(&mut rows),
                        Some(4) => {
                            locked += 1;
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        other => panic!(
                            "{args:?} exited {other:?}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    }
                }
            }
        }
        writing.store(false, Ordering::Release);
        let compacted = compactor.join().unwrap();
        eprintln!("{compacted} compactions; {locked} writes found the index locked");
    });
    ok(&["verify", s(&idx)]);
    assert_eq!(exported(&idx, &tmp.path().join("out.jsonl")), rows);
}

/// A backup into the index's own directory exits 6 (bad input) and leaves nothing there;
/// one beside it works.
#[test]
fn a_backup_into_the_index_exits_6_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    ok(&["create", s(&idx), "--dim", "4"]);
    let listing = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(&idx);
    for dest in [idx.join("bk"), idx.join("wal").join("bk")] {
        let out = hnswdb(&["backup", s(&idx), s(&dest)]);
        assert_eq!(out.status.code(), Some(6), "{dest:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("inside"));
        assert_eq!(listing(&idx), before);
    }
    ok(&["backup", s(&idx), s(&tmp.path().join("bk"))]);
    ok(&["verify", s(&tmp.path().join("bk"))]);
}

/// Progress bars are drawn only on a terminal: with stderr a pipe, as in scripts and
/// tests, `import`, `backup` and `compact` write nothing there.
#[test]
fn long_commands_draw_no_bar_off_a_terminal() {
    let root = tempfile::tempdir().unwrap();
    let (dir, copy) = (root.path().join("idx"), root.path().join("copy"));
    let file = root.path().join("rows.jsonl");
    let lines: Vec<String> = (0..500u64)
        .map(|id| json!({"id": id, "vector": vector(id)}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&["create", s(&dir), "--dim", "4", "--metric", "l2"]);
    for args in [
        vec!["import", s(&dir), s(&file)],
        vec!["backup", s(&dir), s(&copy)],
        vec!["compact", s(&dir)],
    ] {
        let out = hnswdb(&args);
        assert!(out.status.success(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}
