//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses its own part of these helpers

pub mod workload;

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
