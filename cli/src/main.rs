//! The `hnswdb` command-line tool: create, fill, query, export and inspect an index
//! directory. Every command that prints results takes `--json`; exit codes are listed in
//! `--help` and stay stable for scripts.

mod args;
mod commands;
mod ids;
mod search;

use std::process::ExitCode;

use clap::Parser;
use hnswdb::Error;
use serde_json::{Value, json};

use args::Cli;

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
            | Error::DuplicateKey(_)
            | Error::UnknownKey(_)
            | Error::InvalidKey(_)
            | Error::IdKind(_)
            | Error::InvalidOption(_)
            | Error::InvalidPayload(_)
            | Error::InvalidFilter(_)
            | Error::InvalidVector(_),
        ) => 6,
        Some(Error::DiskFull { .. } | Error::Io { .. }) => 7,
        _ if e.downcast_ref::<InputError>().is_some() => 6,
        _ => 1,
    }
}

/// Opens an index for a command that only reads: read-only, so that any number of them
/// run beside a writer and change nothing. After a writer crashed, the metadata needs a
/// repair only a writable open makes: then the command opens for writing (recovering the
/// index, as any writable open does), unless a writer holds the index.
fn open_for_reading(dir: &std::path::Path) -> hnswdb::Result<hnswdb::Index> {
    open_for_reading_with(dir, hnswdb::OpenOptions::default())
}

/// `open_for_reading` with options (a memory budget, say).
fn open_for_reading_with(
    dir: &std::path::Path,
    options: hnswdb::OpenOptions,
) -> hnswdb::Result<hnswdb::Index> {
    match hnswdb::Index::open_with(dir, &options.clone().read_only(true)) {
        Err(Error::NeedsRecovery(_)) => hnswdb::Index::open_with(dir, &options),
        opened => opened,
    }
}

/// A malformed command-line or stdin vector, or an input file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

/// What a reader of an input file returned, an I/O error being bad input (exit 6, as
/// `--help` lists "unreadable input file"), not a failure of the index (7).
fn input_file<T>(read: hnswdb::Result<T>) -> CliResult<T> {
    match read {
        Err(e @ Error::Io { .. }) => Err(InputError(e.to_string()).into()),
        other => Ok(other?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // A bad command line is an error like any other for a script reading --json
        // (exit 2); --help and --version are not errors.
        if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
            // The message without clap's "error: " and the usage text after it, as other
            // JSON errors are.
            let text = e.render().to_string();
            let message = text.split("\n\n").next().unwrap_or(&text);
            let message = message.strip_prefix("error: ").unwrap_or(message);
            println!(
                "{}",
                json!({"error": message.trim_end(), "code": e.exit_code()})
            );
        }
        e.exit()
    });
    let out = Output { json: cli.json };
    match commands::run(cli.command, out) {
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
