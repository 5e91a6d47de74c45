//! Ids as the command line reads and prints them: integers on an integer-id index,
//! string keys on a string-id one (`create --ids str`). The engine answers internal
//! `u64` ids either way; these are the only places that translate.

use hnswdb::{IdKind, Index};
use hnswdb_datasets::RowId;
use serde_json::{Value, json};

use crate::{CliResult, InputError};

/// The internal id of each of `given` (as typed on the command line): parsed as an
/// integer, or resolved as a key (`UnknownKey` if absent).
pub fn ids_in(index: &Index, given: &[String]) -> CliResult<Vec<u64>> {
    given
        .iter()
        .map(|text| -> CliResult<u64> {
            match index.id_kind() {
                IdKind::Int => text.parse().map_err(|_| {
                    InputError(format!(
                        "{text:?} is not an integer id (the index has integer ids)"
                    ))
                    .into()
                }),
                IdKind::Str => index
                    .resolve_key(text)?
                    .ok_or_else(|| hnswdb::Error::UnknownKey(text.clone()).into()),
            }
        })
        .collect()
}

/// The id a user knows `id` by: itself, or its key.
pub fn id_out(index: &Index, id: u64) -> CliResult<RowId> {
    Ok(match index.id_kind() {
        IdKind::Int => RowId::Int(id),
        IdKind::Str => RowId::Str(index.key_of(id)?.ok_or_else(|| {
            hnswdb::Error::Stale(format!("id {id} has no key: the index changed meanwhile"))
        })?),
    })
}

/// `id_out` as JSON.
pub fn id_json(index: &Index, id: u64) -> CliResult<Value> {
    Ok(json!(id_out(index, id)?))
}

/// The keys of rows read from a file into a string-id index: their string ids, which
/// every row must have.
pub fn keys_of_rows(ids: &[RowId]) -> CliResult<Vec<String>> {
    ids.iter()
        .map(|id| match id {
            RowId::Str(key) => Ok(key.clone()),
            RowId::Int(id) => Err(InputError(format!(
                "row id {id} is an integer; the index has string ids"
            ))
            .into()),
        })
        .collect()
}

/// The integer ids of rows read from a file into an integer-id index.
pub fn ints_of_rows(ids: &[RowId]) -> CliResult<Vec<u64>> {
    ids.iter()
        .map(|id| match id {
            RowId::Int(id) => Ok(*id),
            RowId::Str(key) => Err(InputError(format!(
                "row id {key:?} is a string; the index has integer ids (create it with --ids str)"
            ))
            .into()),
        })
        .collect()
}
