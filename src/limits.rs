//! Every limit on a size a caller gives, in one place (`docs/limits.md` lists each with
//! the error it gives). Each is checked where the size enters, before anything is
//! allocated or written, and what is read back is held to the same limit as what was
//! written.

use crate::error::{Error, Result};

pub use crate::filter::{MAX_FIELD_NAME, MAX_FIELDS, MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES};
pub use crate::store::meta::{MAX_DIM, MAX_EF};

/// Most answers a search may ask for, counting the ones paging skips (`offset + k`). A
/// search keeps that many candidates in memory per query (and Python pads its answer
/// matrix to k), so the bound is where a typo or an overflow becomes an error instead of
/// an allocation that aborts the process. Milvus caps `offset + limit` at the same 16,384;
/// `search_within` needs no k and has no such cap.
pub const MAX_K: usize = 16_384;

/// Most ids one write may carry (insert, upsert, delete, set_payloads): a write is one
/// log record (or a few), and a delete's ids must fit one record's frame.
pub const MAX_BATCH: usize = 1 << 24;

/// Most serialised payload bytes one `set_payloads` may carry: they go in one log record,
/// whose frame holds at most 1 GiB (an insert with payloads is split into parts instead).
pub const MAX_BATCH_PAYLOAD_BYTES: usize = 512 << 20;

/// Longest key of a string-id index, in bytes of UTF-8: a key is an identifier (a
/// document id, a URL, a path), stored twice in the metadata and once per write in the
/// log, not a place for data (payloads are).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a key of a string-id index: not empty, at most `MAX_KEY_BYTES`.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("a key may not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidKey(format!(
            "a key of {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks the sizes of a search: `offset + k` answers at most `MAX_K`, a beam of at
/// most `MAX_EF` (0 is taken as 1, as it always was).
pub(crate) fn check_search(k: usize, offset: usize, ef: usize) -> Result<()> {
    if k.saturating_add(offset) > MAX_K {
        return Err(Error::InvalidOption(format!(
            "k {k} + offset {offset} asks for more than {MAX_K} answers"
        )));
    }
    if ef > MAX_EF {
        return Err(Error::InvalidOption(format!(
            "ef {ef} is over the limit of {MAX_EF}"
        )));
    }
    Ok(())
}

/// Checks the number of ids of one write.
pub(crate) fn check_batch(n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(Error::InvalidOption(format!(
            "{n} ids in one write; the limit is {MAX_BATCH}: split the batch"
        )));
    }
    Ok(())
}

/// Checks the serialised payload bytes of one `set_payloads` against
/// `MAX_BATCH_PAYLOAD_BYTES`.
pub(crate) fn check_batch_payload_bytes(bytes: usize) -> Result<()> {
    if bytes > MAX_BATCH_PAYLOAD_BYTES {
        return Err(Error::InvalidPayload(format!(
            "{bytes} payload bytes in one write; the limit is {MAX_BATCH_PAYLOAD_BYTES}: \
             split the batch"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sizes around a limit: at it, next to it, and far beyond (up to usize::MAX).
    fn around(limit: usize) -> impl Strategy<Value = usize> {
        prop_oneof![
            (0usize..4).prop_map(move |d| limit - d.min(limit)),
            (1usize..4).prop_map(move |d| limit + d),
            any::<usize>(),
            Just(usize::MAX),
        ]
    }

    proptest! {
        #[test]
        fn search_sizes_pass_exactly_within_their_limits(
            k in around(MAX_K), offset in prop_oneof![Just(0usize), around(MAX_K)],
            ef in around(MAX_EF),
        ) {
            let ok = k as u128 + offset as u128 <= MAX_K as u128 && ef <= MAX_EF;
            match check_search(k, offset, ef) {
                Ok(()) => prop_assert!(ok),
                Err(Error::InvalidOption(_)) => prop_assert!(!ok),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        #[test]
        fn batch_sizes_pass_exactly_within_the_limit(n in around(MAX_BATCH)) {
            prop_assert_eq!(check_batch(n).is_ok(), n <= MAX_BATCH);
        }

        #[test]
        fn keys_pass_exactly_within_the_limit(len in around(MAX_KEY_BYTES).prop_map(|n| n.min(1 << 20))) {
            let key = "k".repeat(len);
            match check_key(&key) {
                Ok(()) => prop_assert!((1..=MAX_KEY_BYTES).contains(&len)),
                Err(Error::InvalidKey(_)) => prop_assert!(len == 0 || len > MAX_KEY_BYTES),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        #[test]
        fn batch_payload_bytes_pass_exactly_within_the_limit(
            bytes in around(MAX_BATCH_PAYLOAD_BYTES),
        ) {
            prop_assert_eq!(
                check_batch_payload_bytes(bytes).is_ok(),
                bytes <= MAX_BATCH_PAYLOAD_BYTES
            );
        }
    }
}
