//! The command-line tool as a script uses it: every input and output format, lookup
//! search from the command line and stdin, `--json` output, and the documented exit codes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use hnswdb_datasets::{self as datasets, clustered};
use serde_json::Value;

fn hnswdb(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hnswdb"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    child.wait_with_output().unwrap()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = hnswdb(args, stdin);
    assert!(
        out.status.success(),
        "hnswdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn code(args: &[&str]) -> i32 {
    hnswdb(args, None).status.code().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn import_export_round_trip_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let data = clustered(300, 8, 5, 1);
    let fvecs = tmp.path().join("in.fvecs");
    datasets::write_vectors(&fvecs, None, &data).unwrap();
    let npy = tmp.path().join("in.npy");
    datasets::write_vectors(&npy, None, &data).unwrap();
    let jsonl = tmp.path().join("in.jsonl");
    let ids: Vec<u64> = (0..300).map(|i| 1_000_000 + 7 * i).collect();
    datasets::write_vectors(&jsonl, Some(&ids), &data).unwrap();

    let idx = tmp.path().join("idx");
    ok(&["create", s(&idx), "--dim", "8", "--metric", "l2"], None);
    ok(&["import", s(&idx), s(&fvecs)], None);
    ok(&["import", s(&idx), s(&npy), "--ids-from", "300"], None);
    let report = json_lines(&ok(&["--json", "import", s(&idx), s(&jsonl)], None));
    assert_eq!(report[0]["imported"], 300);
    assert_eq!(report[0]["len"], 900);

    // .jsonl export keeps ids; rows come in ascending id order.
    let out = tmp.path().join("out.jsonl");
    ok(&["export", s(&idx), s(&out)], None);
    let (got_ids, got, _) = datasets::read_jsonl(&out).unwrap();
    let got_ids: Vec<u64> = got_ids
        .into_iter()
        .map(|id| match id {
            datasets::RowId::Int(id) => id,
            datasets::RowId::Str(key) => panic!("string id {key} from an integer-id index"),
        })
        .collect();
    assert_eq!(got.rows, 900);
    assert!(got_ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(&got_ids[600..], &ids[..]);
    assert_eq!(got.row(0), data.row(0));
    assert_eq!(got.row(300), data.row(0));
    assert_eq!(got.row(899), data.row(299));

    // .npy/.fvecs exports read back as the same vectors, with ids beside them.
    for name in ["out.npy", "out.fvecs"] {
        let out = tmp.path().join(name);
        let ids_out = tmp.path().join("ids.txt");
        ok(
            &["export", s(&idx), s(&out), "--ids-out", s(&ids_out)],
            None,
        );
        let m = datasets::read_vectors(&out).unwrap();
        assert_eq!(m, got);
        let listed: Vec<u64> = std::fs::read_to_string(&ids_out)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(listed, got_ids);
    }
}

/// Row `i` of `languages`: a point on a grid 17 wide.
fn grid_point(i: usize) -> [f32; 2] {
    [(i % 17) as f32, (i / 17) as f32]
}

/// An l2 index at `dir/idx` of 300 rows on a grid (`grid_point`), row `i` with payload
/// `{"lang": en|de|fr (i % 3), "n": i}`, `lang` indexed.
fn languages(dir: &Path) -> std::path::PathBuf {
    let idx = dir.join("idx");
    let create = ["create", s(&idx), "--dim", "2", "--metric", "l2"];
    ok(
        &[&create[..], &["--index-field", "lang:keyword"]].concat(),
        None,
    );
    let rows: String = (0..300)
        .map(|i| {
            let lang = ["en", "de", "fr"][i % 3];
            let [x, y] = grid_point(i);
            format!(
                "{{\"id\": {i}, \"vector\": [{x}, {y}], \"payload\": {{\"lang\": \"{lang}\", \"n\": {i}}}}}\n"
            )
        })
        .collect();
    let jsonl = dir.join("rows.jsonl");
    std::fs::write(&jsonl, rows).unwrap();
    ok(&["import", s(&idx), s(&jsonl)], None);
    idx
}

#[test]
fn payloads_filters_and_tune_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = languages(tmp.path());
    // Only German rows, nearest first, with their payloads.
    let found = json_lines(&ok(
        &[
            "--json",
            "search",
            s(&idx),
            "--vector",
            "0,0",
            "--k",
            "5",
            "--filter",
            r#"{"lang": "de"}"#,
            "--payloads",
        ],
        None,
    ));
    let results = found[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["payload"]["lang"] == "de"));
    // A field added later; get prints payloads; set-payload changes one.
    ok(&["index-field", s(&idx), "n:int"], None);
    let found = json_lines(&ok(
        &[
            "--json",
            "search",
            s(&idx),
            "--vector",
            "0,0",
            "--k",
            "300",
            "--filter",
            r#"{"n": {"$lt": 3}}"#,
        ],
        None,
    ));
    let ids: Vec<u64> = found[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    ok(&["set-payload", s(&idx), "1", r#"{"lang": "xx"}"#], None);
    let got = json_lines(&ok(&["--json", "get", s(&idx), "1"], None));
    assert_eq!(got[0]["payload"]["lang"], "xx");
    // Export keeps payloads.
    let out = tmp.path().join("out.jsonl");
    ok(&["export", s(&idx), s(&out)], None);
    let (_, _, payloads) = datasets::read_jsonl(&out).unwrap();
    assert_eq!(payloads[1]["lang"], "xx");
    assert_eq!(payloads[2]["lang"], "fr");
    // Range search: every German row within the distance, nearest first.
    let found = json_lines(&ok(
        &[
            "--json",
            "search",
            s(&idx),
            "--vector",
            "0,0",
            "--within",
            "10",
            "--filter",
            r#"{"lang": "de"}"#,
        ],
        None,
    ));
    let within = found[0]["results"].as_array().unwrap();
    assert!(!within.is_empty());
    assert!(
        within
            .iter()
            .all(|r| r["distance"].as_f64().unwrap() <= 10.0)
    );
    // Bad filters are input errors (exit 6).
    assert_eq!(
        code(&[
            "search",
            s(&idx),
            "--vector",
            "0,0",
            "--filter",
            r#"{"lang": 1}"#
        ]),
        6
    );
    assert_eq!(
        code(&["search", s(&idx), "--vector", "0,0", "--filter", "{"]),
        6
    );
    assert_eq!(code(&["set-payload", s(&idx), "1", "[1]"]), 6);
    let tuned = json_lines(&ok(&["--json", "tune", s(&idx), "--target", "0.9"], None));
    assert!(tuned[0]["recall"].as_f64().unwrap() >= 0.9);
}

/// Benchmark mode (`--query`) searches under `--filter` as lookup mode does: it ignored
/// the filter, and timed and scored unfiltered searches. Options of lookup mode only
/// are refused there, not ignored.
#[test]
fn benchmark_mode_searches_under_the_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = languages(tmp.path());
    // Queries between the grid's points; the truth: the 5 nearest German rows (i % 3 == 1).
    let queries = datasets::Matrix {
        rows: 4,
        dim: 2,
        data: vec![0.3, 0.4, 8.2, 7.6, 16.1, 2.7, 3.3, 15.8],
    };
    let truth: Vec<Vec<u32>> = (0..queries.rows)
        .map(|q| {
            let d = |i: usize| {
                let [x, y] = grid_point(i);
                let (a, b) = (queries.row(q)[0] - x, queries.row(q)[1] - y);
                a * a + b * b
            };
            let mut german: Vec<usize> = (0..300).filter(|i| i % 3 == 1).collect();
            german.sort_by(|&a, &b| d(a).total_cmp(&d(b)).then(a.cmp(&b)));
            german.iter().take(5).map(|&i| i as u32).collect()
        })
        .collect();
    let (qfile, gt) = (tmp.path().join("q.fvecs"), tmp.path().join("gt.ivecs"));
    datasets::write_fvecs(&qfile, &queries).unwrap();
    datasets::write_ivecs(&gt, &truth).unwrap();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "search",
            s(&idx),
            "--query",
            s(&qfile),
            "--gt",
            s(&gt),
        ];
        args.extend_from_slice(&["--k", "5", "--ef", "300"]);
        args.extend_from_slice(extra);
        json_lines(&ok(&args, None))[0]["recall"].as_f64().unwrap()
    };
    assert_eq!(bench(&["--filter", r#"{"lang": "de"}"#]), 1.0);
    assert!(bench(&[]) < 0.5, "unfiltered answers are mostly not German");
    for lookup_only in [&["--offset", "1"][..], &["--within", "1"], &["--payloads"]] {
        let mut args = vec!["search", s(&idx), "--query", s(&qfile)];
        args.extend_from_slice(lookup_only);
        assert_eq!(code(&args), 2, "{lookup_only:?} in benchmark mode");
    }
}

#[test]
fn data_operations_by_filter_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    ok(&["create", s(&idx), "--dim", "2", "--metric", "l2"], None);
    let rows: String = (0..30)
        .map(|i| {
            format!(
                "{{\"id\": {i}, \"vector\": [{i}, 0], \"payload\": {{\"group\": {}, \"name\": \"n{i}\"}}}}\n",
                i % 3
            )
        })
        .collect();
    let jsonl = tmp.path().join("rows.jsonl");
    std::fs::write(&jsonl, rows).unwrap();
    ok(&["import", s(&idx), s(&jsonl)], None);
    let count = |filter: Option<&str>| -> u64 {
        let mut args = vec!["--json", "count", s(&idx)];
        args.extend(filter.iter().flat_map(|f| ["--filter", f]));
        json_lines(&ok(&args, None))[0]["count"].as_u64().unwrap()
    };
    // "group" is declared nowhere: filters on it scan the payloads.
    assert_eq!(count(None), 30);
    assert_eq!(count(Some(r#"{"group": 1}"#)), 10);
    assert_eq!(
        ok(&["count", s(&idx), "--filter", r#"{"group": 2}"#], None).trim(),
        "10"
    );
    // Hits with their payloads and vectors.
    let found = json_lines(&ok(
        &[
            "--json",
            "search",
            s(&idx),
            "--vector",
            "4.2,0",
            "--k",
            "2",
            "--include",
            "payload,vector",
            "--filter",
            r#"{"group": 1}"#,
        ],
        None,
    ));
    let hits = found[0]["results"].as_array().unwrap();
    assert_eq!(hits[0]["id"], 4);
    assert_eq!(
        hits[0]["payload"],
        serde_json::json!({"group": 1, "name": "n4"})
    );
    assert_eq!(hits[0]["vector"], serde_json::json!([4.0, 0.0]));
    assert_eq!(hits[1]["id"], 7);
    // get --filter lists the matches in id order.
    let got = json_lines(&ok(
        &[
            "--json",
            "get",
            s(&idx),
            "--filter",
            r#"{"name": {"$in": ["n7", "n3"]}}"#,
        ],
        None,
    ));
    assert_eq!(
        got.iter()
            .map(|g| g["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 7]
    );
    // Without --json each line starts with its id (it printed vector and payload only).
    let text = ok(
        &[
            "get",
            s(&idx),
            "--filter",
            r#"{"name": {"$in": ["n7", "n3"]}}"#,
        ],
        None,
    );
    let first: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(first, ["3", "7"]);
    // A negative radius is a number, not an option (under ip distances can be negative).
    let within = ["search", s(&idx), "--vector", "3,0", "--within", "-1"];
    assert_eq!(ok(&within, None).trim(), "");
    // --ids-from numbers rows of vector files; a .jsonl row has its own id (was ignored).
    let jsonl = tmp.path().join("more.jsonl");
    std::fs::write(&jsonl, "{\"id\": 500, \"vector\": [5, 5]}\n").unwrap();
    assert_eq!(code(&["import", s(&idx), s(&jsonl), "--ids-from", "9"]), 6);
    // set-payload merges by default, replaces with --replace.
    ok(
        &["set-payload", s(&idx), "3", r#"{"group": 9, "name": null}"#],
        None,
    );
    let got = json_lines(&ok(&["--json", "get", s(&idx), "3"], None));
    assert_eq!(got[0]["payload"], serde_json::json!({"group": 9}));
    ok(
        &["set-payload", s(&idx), "3", r#"{"x": 1}"#, "--merge"],
        None,
    );
    ok(
        &["set-payload", s(&idx), "4", r#"{"x": 1}"#, "--replace"],
        None,
    );
    let got = json_lines(&ok(&["--json", "get", s(&idx), "3", "4"], None));
    assert_eq!(got[0]["payload"], serde_json::json!({"group": 9, "x": 1}));
    assert_eq!(got[1]["payload"], serde_json::json!({"x": 1}));
    // delete --filter deletes every match in one write; --missing-ok skips absent ids.
    let deleted = json_lines(&ok(
        &["--json", "delete", s(&idx), "--filter", r#"{"group": 0}"#],
        None,
    ));
    // (id 3 is in group 9 now)
    assert_eq!(deleted[0]["deleted"], 9);
    assert_eq!(count(None), 21);
    assert_eq!(code(&["delete", s(&idx), "0", "1"]), 6);
    let deleted = json_lines(&ok(
        &["--json", "delete", s(&idx), "0", "1", "--missing-ok"],
        None,
    ));
    assert_eq!(deleted[0]["deleted"], 1);
    assert_eq!(count(None), 20);
    assert_eq!(code(&["delete", s(&idx), "--filter", "{"]), 6);
    assert_eq!(code(&["delete", s(&idx), "2", "--filter", "{}"]), 2);
}

#[test]
fn lookup_search_from_arguments_and_stdin() {
    // The same answers with vectors stored as f16 or bf16 (these values are exact in both).
    for storage in ["f32", "f16", "bf16"] {
        lookup_search(storage);
    }
}

fn lookup_search(storage: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    ok(
        &[
            "create",
            s(&idx),
            "--dim",
            "3",
            "--metric",
            "l2",
            "--storage",
            storage,
        ],
        None,
    );
    let jsonl = tmp.path().join("a.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": 10, \"vector\": [1, 0, 0]}\n{\"id\": 20, \"vector\": [0, 1, 0]}\n\n{\"id\": 30, \"vector\": [0, 0, 1]}\n",
    )
    .unwrap();
    ok(&["import", s(&idx), s(&jsonl)], None);

    let text = ok(
        &["search", s(&idx), "--vector", "0.9,0.1,0", "--k", "2"],
        None,
    );
    let first: Vec<&str> = text.lines().next().unwrap().split('\t').collect();
    assert_eq!(first[..2], ["1", "10"]);

    let answers = json_lines(&ok(
        &["--json", "search", s(&idx), "--vector", "-", "--k", "1"],
        Some("[0, 1, 0]\n0 0 0.8\n"),
    ));
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0]["results"][0]["id"], 20);
    assert_eq!(answers[1]["results"][0]["id"], 30);
    let d = answers[1]["results"][0]["distance"].as_f64().unwrap();
    assert!((d - 0.04).abs() < 1e-6, "{d}");

    let got = json_lines(&ok(&["--json", "get", s(&idx), "30", "10"], None));
    assert_eq!(got[0]["vector"], serde_json::json!([0.0, 0.0, 1.0]));
    assert_eq!(got[1]["id"], 10);

    let deleted = json_lines(&ok(&["--json", "delete", s(&idx), "20"], None));
    assert_eq!(deleted[0]["len"], 2);
    let stats = json_lines(&ok(&["--json", "stats", s(&idx)], None));
    assert_eq!(stats[0]["len"], 2);
    assert_eq!(stats[0]["storage"], storage);
    let verify = json_lines(&ok(&["--json", "verify", s(&idx)], None));
    assert_eq!(verify[0]["ok"], true);
}

#[test]
fn rabitq_at_low_dimension_gets_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    for (routing, hinted) in [("rabitq", true), ("sq8", false)] {
        let idx = tmp.path().join(routing);
        let out = hnswdb(
            &["create", s(&idx), "--dim", "32", "--routing", routing],
            None,
        );
        assert!(out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr.contains("hint: at 32 dimensions RaBitQ"),
            hinted,
            "{stderr}"
        );
    }
}

#[test]
fn exit_codes_and_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    let missing = tmp.path().join("missing");
    assert_eq!(code(&["stats", s(&missing)]), 3);
    ok(&["create", s(&idx), "--dim", "3"], None);
    assert_eq!(code(&["create", s(&idx), "--dim", "3"]), 3);
    assert_eq!(code(&["search", s(&idx), "--vector", "1,2"]), 6);
    assert_eq!(code(&["search", s(&idx), "--vector", "1,nan,2"]), 6);
    assert_eq!(code(&["search", s(&idx), "--vector", "1,x,2"]), 6);
    assert_eq!(code(&["delete", s(&idx), "5"]), 6);
    assert_eq!(code(&["search", s(&idx)]), 2, "usage error");
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": 1, \"vector\": [1, 2, 3]}\nnot json\n").unwrap();
    assert_eq!(code(&["import", s(&idx), s(&bad)]), 6);
    // Input files that cannot be read, or ground truth that does not fit the queries,
    // are bad input too (were 7 and 1).
    let absent = tmp.path().join("absent.fvecs");
    assert_eq!(code(&["import", s(&idx), s(&absent)]), 6);
    let queries = tmp.path().join("q.fvecs");
    datasets::write_vectors(&queries, None, &clustered(4, 3, 1, 2)).unwrap();
    let gt = tmp.path().join("gt.ivecs");
    datasets::write_ivecs(&gt, &vec![vec![0u32]; 2]).unwrap();
    let search = [
        "search",
        s(&idx),
        "--query",
        s(&queries),
        "--gt",
        s(&gt),
        "--k",
        "1",
    ];
    assert_eq!(code(&search), 6, "2 ground-truth rows for 4 queries");
    datasets::write_ivecs(&gt, &vec![vec![0u32]; 4]).unwrap();
    let mut deeper = search.to_vec();
    deeper[7] = "2";
    assert_eq!(code(&deeper), 6, "ground-truth rows shorter than k");
    // With --json a bad command line is a JSON error on stdout too.
    let out = hnswdb(&["--json", "search", s(&idx), "--ef", "10,x"], None);
    assert_eq!(out.status.code(), Some(2));
    let error = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(error[0]["code"], 2);
    assert!(error[0]["error"].as_str().unwrap().contains("--ef"));
    // Only the message: no "error: " prefix, no usage text.
    let out = hnswdb(&["--json", "frobnicate"], None);
    let error = json_lines(&String::from_utf8(out.stdout).unwrap());
    let message = error[0]["error"].as_str().unwrap();
    assert_eq!(message, "unrecognized subcommand 'frobnicate'");

    // A second writer is refused while this process holds the index; readers are not.
    let held = hnswdb::Index::open(&idx).unwrap();
    ok(&["stats", s(&idx)], None);
    let out = hnswdb(&["--json", "delete", s(&idx), "1"], None);
    assert_eq!(out.status.code(), Some(4));
    let error = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(error[0]["code"], 4);
    assert!(error[0]["error"].as_str().unwrap().contains("locked"));
    drop(held);

    // A foreign file where the vector arena should be.
    std::fs::write(idx.join("vectors"), vec![7u8; 8192]).unwrap();
    assert_eq!(code(&["verify", s(&idx)]), 5);
}

/// Sizes beyond the limits (docs/limits.md) are usage errors (exit 6) with a message,
/// never an abort: a huge k or ef, a deep payload or filter.
#[test]
fn sizes_beyond_the_limits_exit_6() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    ok(
        &["create", s(&idx), "--dim", "3", "--index-field", "n:int"],
        None,
    );
    let rows = tmp.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"id\": 0, \"vector\": [1, 2, 3], \"payload\": {\"n\": 1}}\n",
    )
    .unwrap();
    ok(&["import", s(&idx), s(&rows)], None);
    let huge = usize::MAX.to_string();
    let search = |extra: &[&str]| {
        let mut args = vec!["search", s(&idx), "--vector", "1,2,3"];
        args.extend_from_slice(extra);
        code(&args)
    };
    assert_eq!(search(&["--k", &huge]), 6);
    assert_eq!(search(&["--k", "16385"]), 6);
    assert_eq!(search(&["--ef", &huge]), 6);
    assert_eq!(search(&["--k", "10", "--offset", &huge]), 6);
    assert_eq!(search(&["--k", "16384"]), 0);
    assert_eq!(code(&["tune", s(&idx), "--k", &huge]), 6);
    let deep_filter = format!(
        "{}{{\"n\": 1}}{}",
        "{\"$not\": ".repeat(200),
        "}".repeat(200)
    );
    assert_eq!(search(&["--filter", &deep_filter]), 6);
    let deep_payload = format!("{{\"x\": {}{}}}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(code(&["set-payload", s(&idx), "0", &deep_payload]), 6);
}

#[test]
fn twenty_searches_succeed_while_an_import_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    let first = clustered(2_000, 16, 10, 1);
    let second = clustered(30_000, 16, 10, 2);
    let (a, b) = (tmp.path().join("a.fvecs"), tmp.path().join("b.fvecs"));
    datasets::write_vectors(&a, None, &first).unwrap();
    datasets::write_vectors(&b, None, &second).unwrap();
    ok(&["create", s(&idx), "--dim", "16", "--metric", "l2"], None);
    ok(&["import", s(&idx), s(&a)], None);
    let import = Command::new(env!("CARGO_BIN_EXE_hnswdb"))
        .args(["import", s(&idx), s(&b), "--ids-from", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let query: Vec<String> = first.row(5).iter().map(|x| x.to_string()).collect();
    let query = query.join(",");
    let searches: Vec<_> = (0..20)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_hnswdb"))
                .args(["--json", "search", s(&idx), "--vector", &query, "--k", "3"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for search in searches {
        let out = search.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a search beside the import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hits = json_lines(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(hits[0]["results"][0]["id"], 5, "{hits:?}");
    }
    let out = import.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = json_lines(&ok(&["--json", "stats", s(&idx)], None));
    assert_eq!(stats[0]["len"], 32_000);
    // A backup opens on its own and holds the same vectors.
    let copy = tmp.path().join("copy");
    let report = json_lines(&ok(&["--json", "backup", s(&idx), s(&copy)], None));
    assert_eq!(report[0]["len"], 32_000);
    assert_eq!(
        ok(&["get", s(&copy), "31999"], None),
        ok(&["get", s(&idx), "31999"], None)
    );
    assert_eq!(
        code(&["backup", s(&idx), s(&copy)]),
        3,
        "the destination exists"
    );
}

#[test]
fn a_string_id_index_takes_and_prints_keys_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    let created = json_lines(&ok(
        &[
            "--json",
            "create",
            s(&idx),
            "--dim",
            "2",
            "--metric",
            "l2",
            "--ids",
            "str",
        ],
        None,
    ));
    assert_eq!(created[0]["ids"], "str");
    let jsonl = tmp.path().join("in.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": \"doc-a\", \"vector\": [0, 0], \"payload\": {\"lang\": \"en\"}}\n\
         {\"id\": \"doc-b\", \"vector\": [1, 0]}\n\
         {\"id\": \"doc-c\", \"vector\": [5, 5]}\n",
    )
    .unwrap();
    ok(&["import", s(&idx), s(&jsonl)], None);
    // Rows of a file without ids get their row numbers as keys.
    let fvecs = tmp.path().join("in.fvecs");
    let rows = datasets::Matrix {
        rows: 2,
        dim: 2,
        data: vec![9.0, 9.0, 8.0, 8.0],
    };
    datasets::write_vectors(&fvecs, None, &rows).unwrap();
    ok(&["import", s(&idx), s(&fvecs), "--ids-from", "100"], None);

    let found = json_lines(&ok(
        &["--json", "search", s(&idx), "--vector", "0.9,0", "--k", "2"],
        None,
    ));
    let ids: Vec<&str> = found[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["doc-b", "doc-a"]);
    let text = ok(&["search", s(&idx), "--vector", "9,9", "--k", "1"], None);
    assert!(text.starts_with("1\t100\t"), "{text}");

    let got = json_lines(&ok(&["--json", "get", s(&idx), "doc-a", "101"], None));
    assert_eq!(got[0]["id"], "doc-a");
    assert_eq!(got[0]["payload"]["lang"], "en");
    assert_eq!(got[1]["id"], "101");
    ok(
        &["set-payload", s(&idx), "doc-b", r#"{"lang": "de"}"#],
        None,
    );
    ok(&["delete", s(&idx), "doc-c"], None);
    // An absent key, an integer-id row into a string-id index: bad input, nothing done.
    assert_eq!(code(&["delete", s(&idx), "doc-c"]), 6);
    assert_eq!(code(&["get", s(&idx), "nope"]), 6);
    let ints = tmp.path().join("ints.jsonl");
    std::fs::write(&ints, "{\"id\": 7, \"vector\": [1, 1]}\n").unwrap();
    assert_eq!(code(&["import", s(&idx), s(&ints)]), 6);

    // Export keeps the keys (in .jsonl and --ids-out); stats names the kind.
    let out = tmp.path().join("out.jsonl");
    let ids_out = tmp.path().join("ids.txt");
    ok(
        &["export", s(&idx), s(&out), "--ids-out", s(&ids_out)],
        None,
    );
    let (keys, _, payloads) = datasets::read_jsonl(&out).unwrap();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys, ["doc-a", "doc-b", "100", "101"]);
    assert_eq!(payloads[1]["lang"], "de");
    assert_eq!(
        std::fs::read_to_string(&ids_out).unwrap(),
        "doc-a\ndoc-b\n100\n101\n"
    );
    let stats = json_lines(&ok(&["--json", "stats", s(&idx)], None));
    assert_eq!(stats[0]["ids"], "str");
    assert_eq!(code(&["verify", s(&idx)]), 0);

    // The export imports into a new string-id index as it was.
    let copy = tmp.path().join("copy");
    ok(
        &[
            "create",
            s(&copy),
            "--dim",
            "2",
            "--metric",
            "l2",
            "--ids",
            "str",
        ],
        None,
    );
    ok(&["import", s(&copy), s(&out)], None);
    let got = json_lines(&ok(&["--json", "get", s(&copy), "doc-b"], None));
    assert_eq!(got[0]["vector"], serde_json::json!([1.0, 0.0]));
    // An integer-id index refuses a key where an id belongs.
    let plain = tmp.path().join("plain");
    ok(&["create", s(&plain), "--dim", "2"], None);
    assert_eq!(code(&["get", s(&plain), "doc-a"]), 6);
}

#[test]
fn routing_auto_plans_from_the_budget_and_says_what_it_chose() {
    let tmp = tempfile::tempdir().unwrap();
    let create = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut args = vec!["--json", "create", s(&dir), "--dim", "384", "--m", "8"];
        args.extend_from_slice(extra);
        hnswdb(&args, None)
    };
    let routing = |out: Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&String::from_utf8(out.stdout).unwrap())[0]["routing"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The Debian set's size at M 8 (docs/larger-than-ram.md): 1 bit under 9 MiB (codes
    // and lists), 4 under 24, SQ8 when the vectors fit too.
    let plan = |name: &str, mib: &str| {
        routing(create(
            name,
            &[
                "--routing",
                "auto",
                "--expected",
                "59004",
                "--memory-budget",
                mib,
            ],
        ))
    };
    assert_eq!(plan("a", "9"), "rabitq");
    assert_eq!(plan("b", "24"), "rabitq:4");
    assert_eq!(plan("c", "200"), "sq8");
    let stats = json_lines(&ok(&["--json", "stats", s(&tmp.path().join("b"))], None));
    assert_eq!(stats[0]["routing"], "rabitq:4");
    assert_eq!(routing(create("d", &[])), "sq8");
    // Refused, and nothing created: a budget below the overhead, auto without its two
    // figures, the figures without auto.
    for (name, extra) in [
        (
            "e",
            &[
                "--routing",
                "auto",
                "--expected",
                "59004",
                "--memory-budget",
                "2",
            ][..],
        ),
        ("f", &["--routing", "auto", "--memory-budget", "9"][..]),
        ("g", &["--expected", "100", "--memory-budget", "9"][..]),
    ] {
        assert_eq!(create(name, extra).status.code(), Some(6), "{extra:?}");
        assert!(!tmp.path().join(name).exists(), "{extra:?}");
    }
}
