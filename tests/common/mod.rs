//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses its own part of these helpers

pub mod workload;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Copies a directory tree: of an open index, the files as a `kill -9` would leave them.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Starts this test binary again as a child process that runs only the ignored test
/// `test`, with `env` set to `value`: how the kill tests get a process to kill.
pub fn spawn_child(test: &str, env: &str, value: impl AsRef<std::ffi::OsStr>) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--ignored", "--nocapture", "-q"])
        .env(env, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for reader processes and sums the count each reports on its stdout line that
/// starts with `prefix`, as the `field`-th word; fails if any failed or did not report.
pub fn sum_reports(children: Vec<Child>, prefix: &str, field: usize) -> u64 {
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a reader failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = std::io::BufReader::new(stdout.as_bytes())
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with(prefix))
            .expect("the reader reports");
        total += line
            .split_whitespace()
            .nth(field)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a count");
        eprintln!("{line}");
    }
    total
}
