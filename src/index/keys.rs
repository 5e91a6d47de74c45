//! String ids: an index created with `IdKind::Str` binds each key to a `u64` id it
//! assigns, and the engine below works in those ids. A binding is written in the log
//! record of the write that creates its vector (and removed by the delete's), kept in the
//! ledger until the checkpoint writes it into the metadata's `keys` and `key_of` tables:
//! it is exactly as durable as the vector, and a read-only view replaying the log sees it.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::Index;
use super::progress::{Progress, QUIET};
use super::write::{Ledger, Names};
use crate::error::{Error, Result};
use crate::limits::{check_batch, check_key};
use crate::store::IdKind;

impl Index {
    /// Whether the index's vectors are named by integers or by string keys (fixed at
    /// creation: [`IndexOptions::id_kind`](crate::IndexOptions::id_kind)).
    pub fn id_kind(&self) -> IdKind {
        self.config.id_kind
    }

    /// Checks that a write names its rows as the index does: keys in a string-id index
    /// (valid ones, none twice), ids in an integer-id one.
    pub(super) fn check_names(&self, names: Names<'_>) -> Result<()> {
        match (names, self.config.id_kind) {
            (Names::Ids(_), IdKind::Int) => Ok(()),
            (Names::Keys(keys), IdKind::Str) => {
                let mut seen = HashSet::with_capacity(keys.len());
                for key in keys {
                    check_key(key)?;
                    if !seen.insert(key) {
                        return Err(Error::DuplicateKey(key.clone()));
                    }
                }
                Ok(())
            }
            (Names::Ids(_), IdKind::Str) => Err(Error::IdKind(
                "this index has string ids, which it assigns ids to: write with insert_keys \
                 or upsert_keys"
                    .into(),
            )),
            (Names::Keys(_), IdKind::Int) => Err(self.not_keyed()),
        }
    }

    fn not_keyed(&self) -> Error {
        Error::IdKind("this index has integer ids, not string keys".into())
    }

    fn keyed_only(&self) -> Result<()> {
        match self.config.id_kind {
            IdKind::Str => Ok(()),
            IdKind::Int => Err(self.not_keyed()),
        }
    }

    /// The id `key` is bound to, if it names a live vector. `IdKind` on an integer-id
    /// index.
    pub fn resolve_key(&self, key: &str) -> Result<Option<u64>> {
        self.keyed_only()?;
        self.follow()?;
        let graph = self.graph.read();
        let Some(id) = self.ledger.lock().id_of_key(&self.meta(), key)? else {
            return Ok(None);
        };
        // An insert binds its keys before its vectors are visible.
        Ok(self.visible_slot(&graph, id)?.map(|_| id))
    }

    /// The key `id` is bound to, if any. `IdKind` on an integer-id index.
    pub fn key_of(&self, id: u64) -> Result<Option<String>> {
        Ok(self.keys_of(&[id])?.pop().flatten())
    }

    /// The keys of `ids`, in order (`None` for an id bound to none), read together: what
    /// turns a search answer into keys. `IdKind` on an integer-id index.
    pub fn keys_of(&self, ids: &[u64]) -> Result<Vec<Option<String>>> {
        self.keyed_only()?;
        self.follow()?;
        self.ledger.lock().keys_of(&self.meta(), ids)
    }

    /// Inserts a vector under each key (rows of `vectors`, as `insert_batch` takes them),
    /// with a payload per row if given (`Value::Null`: none), as one logged write: all or
    /// nothing. The index gives each key a new id. `DuplicateKey` if a key is present or
    /// given twice; `InvalidKey` for an empty key or one over `limits::MAX_KEY_BYTES`.
    pub fn insert_keys<K: AsRef<str>>(
        &self,
        keys: &[K],
        vectors: &[f32],
        payloads: Option<&[Value]>,
    ) -> Result<()> {
        self.insert_keys_progress(keys, vectors, payloads, QUIET)
    }

    /// `insert_keys`, reporting rows placed to `progress` (see `insert_batch_progress`).
    pub fn insert_keys_progress<K: AsRef<str>>(
        &self,
        keys: &[K],
        vectors: &[f32],
        payloads: Option<&[Value]>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let keys = owned(keys);
        self.insert_named(
            Names::Keys(&keys),
            vectors,
            payloads,
            self.threads(),
            progress,
        )
    }

    /// Inserts or replaces the vector of each key, as `insert_keys` takes them: a present
    /// key keeps its id, a new one is given one. A payload replaces the key's;
    /// `Value::Null` keeps the one it has (a new key then has none).
    pub fn upsert_keys<K: AsRef<str>>(
        &self,
        keys: &[K],
        vectors: &[f32],
        payloads: Option<&[Value]>,
    ) -> Result<()> {
        self.upsert_keys_progress(keys, vectors, payloads, QUIET)
    }

    /// `upsert_keys`, reporting rows placed to `progress`.
    pub fn upsert_keys_progress<K: AsRef<str>>(
        &self,
        keys: &[K],
        vectors: &[f32],
        payloads: Option<&[Value]>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let keys = owned(keys);
        self.upsert_named(
            Names::Keys(&keys),
            vectors,
            payloads,
            self.threads(),
            progress,
        )
    }

    /// Deletes the vectors (and payloads) of `keys` as one logged write, which unbinds
    /// them. Returns how many were deleted. An absent key is `UnknownKey`, a repeated
    /// one `DuplicateKey`, and either deletes nothing, unless `missing_ok`, which skips
    /// it.
    pub fn delete_keys<K: AsRef<str>>(&self, keys: &[K], missing_ok: bool) -> Result<u64> {
        self.keyed_only()?;
        self.writable_log()?;
        check_batch(keys.len())?;
        let graph = self.graph.write();
        let p = self.ledger.lock();
        let meta = self.meta();
        let mut ids = Vec::with_capacity(keys.len());
        let mut seen = HashSet::with_capacity(keys.len());
        for key in keys {
            let key = key.as_ref();
            check_key(key)?;
            match p.id_of_key(&meta, key)? {
                // A binding names a live id; anything else is damage, caught before the
                // delete is logged (it would not apply).
                Some(id) if p.slot_of(&meta, id)?.is_none() => {
                    return Err(Error::corrupt(
                        meta.path(),
                        format!("key {key:?} is bound to id {id}, which is not live"),
                    ));
                }
                Some(id) if seen.insert(id) => ids.push(id),
                Some(_) if !missing_ok => return Err(Error::DuplicateKey(key.to_string())),
                _ if missing_ok => {}
                _ => return Err(Error::UnknownKey(key.to_string())),
            }
        }
        let deleted = ids.len() as u64;
        if !ids.is_empty() {
            self.delete_locked(graph, p, ids)?;
        }
        Ok(deleted)
    }

    /// Every binding of the current state, as each table holds it (checkpointed ones from
    /// the metadata, newer ones from the ledger): key → id and id → key. `verify`
    /// compares them with each other and with the live ids.
    pub(super) fn bindings(
        &self,
        p: &Ledger,
    ) -> Result<(HashMap<String, u64>, HashMap<u64, String>)> {
        let (forward, backward) = self.meta().all_keys()?;
        let mut keys: HashMap<String, u64> = forward.into_iter().collect();
        let mut key_of: HashMap<u64, String> = backward.into_iter().collect();
        for (key, id) in &p.keys {
            match id {
                Some(id) => keys.insert(key.clone(), *id),
                None => keys.remove(key),
            };
        }
        for (id, key) in &p.key_of {
            match key {
                Some(key) => key_of.insert(*id, key.clone()),
                None => key_of.remove(id),
            };
        }
        Ok((keys, key_of))
    }

    /// `verify`'s check of the bindings: in a string-id index every live id has exactly
    /// one key and the two tables agree; an integer-id index has none.
    pub(super) fn check_bindings(
        &self,
        p: &Ledger,
        live: &[(u64, u32)],
        problems: &mut Vec<String>,
    ) -> Result<()> {
        let (keys, key_of) = self.bindings(p)?;
        if self.config.id_kind == IdKind::Int {
            if !keys.is_empty() || !key_of.is_empty() {
                problems.push("an integer-id index holds key bindings".into());
            }
            return Ok(());
        }
        for &(id, _) in live {
            match key_of.get(&id) {
                None => problems.push(format!("live id {id} has no key")),
                Some(key) if keys.get(key) != Some(&id) => problems.push(format!(
                    "id {id} is bound to key {key:?}, which is bound to {:?}",
                    keys.get(key)
                )),
                Some(_) => {}
            }
        }
        if keys.len() != live.len() || key_of.len() != live.len() {
            problems.push(format!(
                "{} keys and {} key ids are bound, but {} ids are live",
                keys.len(),
                key_of.len(),
                live.len()
            ));
        }
        if let Some(id) = key_of.keys().find(|&&id| id >= p.next_id) {
            problems.push(format!(
                "id {id} is bound, but ids are assigned from {}",
                p.next_id
            ));
        }
        Ok(())
    }
}

fn owned<K: AsRef<str>>(keys: &[K]) -> Vec<String> {
    keys.iter().map(|k| k.as_ref().to_string()).collect()
}
