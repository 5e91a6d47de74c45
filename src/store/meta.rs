//! Metadata in redb: configuration, the external → internal id map, upper-layer lists,
//! free slots and the checkpointed state. Every change reaches redb in one write
//! transaction per checkpoint, so redb always holds one consistent checkpoint.
//!
//! It stores what the layers above decide (which node is the entry point, which lists a
//! node has on which level) as plain records, and knows no graph algorithm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
};

use crate::distance::{Metric, Quantizer, RaBitQ, Routing, Sq8, Storage};
use crate::error::{Error, Result};
use crate::failpoints;
use crate::store::meta_check;
use crate::store::page::FileIdentity;

/// The node graph walks start from, and its level (the graph's top level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    /// Internal node id (slot).
    pub node: u32,
    /// Its level.
    pub level: usize,
}

/// One node's lists on the levels above 0: `lists[l - 1]` holds its neighbours on level `l`.
pub type UpperLists = Vec<Vec<u32>>;

const CONFIG: TableDefinition<&str, u64> = TableDefinition::new("config");
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
const IDS: TableDefinition<u64, u32> = TableDefinition::new("ext_to_int");
const UPPER: TableDefinition<(u32, u8), &[u8]> = TableDefinition::new("upper_links");
const FREE: TableDefinition<u32, ()> = TableDefinition::new("free_slots");
const TOMBSTONES: TableDefinition<u32, ()> = TableDefinition::new("tombstones");
/// Slots whose vector the codes of `codes_generation` do not fit (walks score them exactly).
const MISFITS: TableDefinition<u32, ()> = TableDefinition::new("misfits");
/// The SQ8 quantiser of the current code generation: "offset" and "scale", each `dim`
/// little-endian f32.
const SQ8: TableDefinition<&str, &[u8]> = TableDefinition::new("sq8");

/// External id → its payload (a serialised JSON object), as of the checkpoint.
const PAYLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("payloads");
/// Key → the id it is bound to, in a string-id index, as of the checkpoint.
const KEYS: TableDefinition<&str, u64> = TableDefinition::new("keys");
/// Id → its key: `KEYS` the other way round.
const KEY_OF: TableDefinition<u64, &str> = TableDefinition::new("key_of");
/// Indexed payload field → the code of its kind.
const FIELDS: TableDefinition<&str, u64> = TableDefinition::new("fields");

/// The newest version of the metadata schema (tables and keys) this build reads. Checked
/// on open like the page files'. Version 2 added the `payloads` and `fields` tables (a
/// version-1 database reads as one without payloads and is upgraded by its next commit).
/// Version 3 marks an index that uses a `routing` or `storage` other than the default:
/// a build that predates those keys would ignore them and misread the files, so it must
/// refuse the index as newer instead (an index with the defaults stays at 2). Version 4
/// marks a string-id index (the `id_kind` key and the `keys` and `key_of` tables), which
/// an older build would take for an integer-id one. Version 5 marks an index routed on
/// multi-bit RaBitQ codes (`routing` codes 2..=8), which an older build would take for a
/// corrupt one, or storing bf16 vectors (`storage` 2), whose code a version-3/4 build
/// knows nothing of: either refuses the index as newer rather than as damaged.
pub const META_VERSION: u64 = 5;

/// The version an index written by this build carries: the oldest that reads it right.
fn meta_version_for(config: &Config) -> u64 {
    if matches!(config.routing, Routing::ExRaBitQ(_)) || config.storage == Storage::BF16 {
        5
    } else if config.id_kind == IdKind::Str {
        4
    } else if config.routing != Routing::Sq8 || config.storage != Storage::F32 {
        3
    } else {
        2
    }
}

/// What identifies a vector, fixed when an index is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// The caller's `u64` ids (the default, and every index written before keys existed).
    #[default]
    Int,
    /// The caller's string keys, each bound to a `u64` id the index assigns.
    Str,
}

impl IdKind {
    /// The code stored in the metadata.
    pub fn code(self) -> u64 {
        match self {
            IdKind::Int => 0,
            IdKind::Str => 1,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: u64) -> Option<IdKind> {
        match code {
            0 => Some(IdKind::Int),
            1 => Some(IdKind::Str),
            _ => None,
        }
    }

    /// `"int"` or `"str"`, as the CLI and Python name it.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Int => "int",
            IdKind::Str => "str",
        }
    }
}

impl std::str::FromStr for IdKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<IdKind> {
        match s {
            "int" => Ok(IdKind::Int),
            "str" => Ok(IdKind::Str),
            other => Err(Error::InvalidOption(format!(
                "id kind {other:?} is not \"int\" or \"str\""
            ))),
        }
    }
}

/// Raises the stored metadata version to at least 2 (the tables a commit writes), never
/// lowering it.
fn upgrade_version(txn: &redb::WriteTransaction) -> Result<()> {
    let mut t = txn.open_table(CONFIG).map_err(db_err)?;
    let stored = t.get("meta_version").map_err(db_err)?.map(|v| v.value());
    if stored.is_none_or(|v| v < 2) {
        t.insert("meta_version", 2).map_err(db_err)?;
    }
    Ok(())
}

/// The largest dimension an index may have.
pub const MAX_DIM: usize = 65_536;

/// The largest ef_construction an index may have (a beam wider than this is no use, and a
/// damaged value must not size the search's memory).
pub const MAX_EF: usize = 1 << 20;

/// Key bindings as the two tables hold them: (key, id) from `keys`, (id, key) from
/// `key_of`.
pub type Bindings = (Vec<(String, u64)>, Vec<(u64, String)>);

/// The immutable configuration of an index, fixed at creation.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Vector dimension.
    pub dim: usize,
    /// Distance metric.
    pub metric: Metric,
    /// Neighbours per node on upper layers.
    pub m: usize,
    /// Neighbours per node on layer 0 (2 M).
    pub m0: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Level multiplier mL (1 / ln M).
    pub level_mult: f64,
    /// Seed of the level generator.
    pub seed: u64,
    /// Random id shared with the page files' headers.
    pub index_uid: u64,
    /// What the graph walk runs on (absent in older indexes: SQ8).
    pub routing: Routing,
    /// How the full vectors are stored (absent in older indexes: f32).
    pub storage: Storage,
    /// What identifies a vector (absent in older indexes: integer ids).
    pub id_kind: IdKind,
}

impl Config {
    /// What every page file of the index carries in its header.
    pub fn file_identity(&self) -> FileIdentity {
        FileIdentity {
            dim: self.dim as u32,
            metric: self.metric.code(),
            index_uid: self.index_uid,
        }
    }
}

/// The mutable state as of the last checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// One past the highest slot ever allocated.
    pub high_water: u32,
    /// Number of live vectors.
    pub live: u64,
    /// Entry point, if the index is not empty.
    pub entry: Option<EntryPoint>,
    /// Every write-ahead-log record with a smaller LSN is reflected in the checkpoint.
    pub checkpoint_lsn: u64,
    /// Counter for the level generator: levels stay reproducible across reopens.
    pub level_draws: u64,
    /// Generation `N` of the code file `codes.N` searches walk on; 0: none (no quantiser
    /// trained yet, or an index written before codes existed).
    pub codes_generation: u64,
    /// Live vectors when the quantiser was trained (it is retrained as the index grows).
    pub codes_trained_live: u64,
    /// Misfits (`Meta::misfits`) the training of the codes left.
    pub codes_misfits: u64,
    /// The codes generation the `misfits` table describes: when it is not
    /// `codes_generation` (0: an index written before misfits were kept, or whose older
    /// build retrained since), which vectors the codes do not fit is unknown.
    pub misfits_generation: u64,
    /// Counts checkpoint commits: a read-only view's place in the writer's history, and
    /// what the slot allocator holds freed slots back by (see `store::readers`). Distinct
    /// for every checkpoint, unlike `checkpoint_lsn` (a checkpoint with no write since the
    /// last one may still free slots).
    pub generation: u64,
    /// A string-id index: one past the highest id ever bound to a key (ids are never
    /// reused, so an id never names two keys' vectors). 0 in an integer-id index.
    pub next_id: u64,
}

/// What changed since the last checkpoint.
pub struct Changes<'a> {
    /// External id → new slot, or `None` if the id was removed.
    pub ids: &'a HashMap<u64, Option<u32>>,
    /// Slots whose state changed: their state now.
    pub slots: &'a HashMap<u32, SlotState>,
    /// Nodes whose upper lists changed (`None`: the node has none any more).
    pub upper: &'a [(u32, Option<UpperLists>)],
    /// The new state.
    pub state: &'a State,
    /// A quantiser trained at this checkpoint (of generation `state.codes_generation`).
    pub quantizer: Option<&'a Quantizer>,
    /// The misfit slots of the codes, if they changed (all of them: they replace the set).
    pub misfits: Option<&'a [u32]>,
    /// External id → its new payload, or `None` if it has none any more.
    pub payloads: &'a HashMap<u64, Option<Vec<u8>>>,
    /// Key → the id it is now bound to, or `None` if it is unbound.
    pub keys: &'a HashMap<String, Option<u64>>,
    /// Id → the key it is now bound to, or `None` if it is unbound.
    pub key_of: &'a HashMap<u64, Option<String>>,
}

/// What a slot below the high-water mark holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// A live vector.
    Live,
    /// A deleted vector still linked into the graph (awaiting consolidation).
    Tombstone,
    /// Reusable.
    Free,
}

/// The open metadata database.
pub struct Meta {
    db: Db,
    path: PathBuf,
    /// A read-only open reads every table through the one transaction it began at open:
    /// the checkpoint its view starts from, however many the writer commits meanwhile.
    pinned: Option<redb::ReadTransaction>,
    /// Declared last, so dropped after `db`: a writer seals the file as redb's close
    /// leaves it. Never read: it acts only as it is dropped.
    _seal: Seal,
}

/// Seals a writer's file when dropped (`None`: a read-only open, which changes nothing).
struct Seal(Option<PathBuf>);

impl Drop for Seal {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            meta_check::seal(path);
        }
    }
}

/// A read transaction: the pinned one, or a fresh one of the latest commit.
enum Txn<'a> {
    Pinned(&'a redb::ReadTransaction),
    Fresh(redb::ReadTransaction),
}

impl std::ops::Deref for Txn<'_> {
    type Target = redb::ReadTransaction;
    fn deref(&self) -> &redb::ReadTransaction {
        match self {
            Txn::Pinned(t) => t,
            Txn::Fresh(t) => t,
        }
    }
}

/// The database, opened for writing (one process at a time) or read-only (any number of
/// processes, beside the writer: redb's single-writer mode lets readers follow its
/// commits).
enum Db {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction> {
        match self {
            Db::Writable(db) => db.begin_write().map_err(db_err),
            Db::ReadOnly(_) => Err(Error::ReadOnly),
        }
    }
}

fn db_err(e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    // redb wraps I/O errors in several error enums; a full disk must still be reported as
    // one, whichever wrapper carried it.
    if text.contains("No space left on device") || text.contains("os error 28") {
        return Error::DiskFull {
            path: PathBuf::from(META_FILE_NAME),
        };
    }
    Error::Meta(text)
}

/// File name of the metadata database in an index directory.
pub const META_FILE_NAME: &str = "meta.redb";

fn open_err(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            Error::Locked(path.parent().unwrap_or(path).to_path_buf())
        }
        // Only a read-only open aborts a repair: the writer crashed, and the repair (a
        // write) waits for the next writable open.
        redb::DatabaseError::RepairAborted => {
            Error::NeedsRecovery(path.parent().unwrap_or(path).to_path_buf())
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => {
            Error::corrupt(path, why)
        }
        // redb reports a file that is not a redb database as an InvalidData I/O error.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::corrupt(path, format!("not a metadata database: {io}"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => Error::io(path, io),
        other => Error::corrupt(path, format!("not a readable metadata database: {other}")),
    }
}

/// Runs `f`, turning a panic inside redb into `Error::Corrupt`: redb panics on some
/// damaged pages instead of returning an error (see `meta_check` for what is checked
/// before redb reads, and what this still has to catch).
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    meta_check::catch(f).unwrap_or_else(|why| {
        Err(Error::corrupt(
            path,
            format!(
                "the metadata database failed redb's internal check ({why}): the file is damaged"
            ),
        ))
    })
}

fn builder(cache_bytes: usize) -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(cache_bytes)
        .set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b
}

impl Meta {
    /// Creates the database and stores the configuration and an empty state.
    pub fn create(
        path: &Path,
        config: &Config,
        fields: &[(String, u64)],
        cache_bytes: usize,
    ) -> Result<Meta> {
        guard(path, || {
            let db = builder(cache_bytes)
                .create(path)
                .map_err(|e| open_err(path, e))?;
            let meta = Meta {
                db: Db::Writable(db),
                path: path.to_path_buf(),
                pinned: None,
                _seal: Seal(Some(path.to_path_buf())),
            };
            let txn = meta.db.begin_write()?;
            {
                let mut t = txn.open_table(CONFIG).map_err(db_err)?;
                let rows: [(&str, u64); 12] = [
                    ("meta_version", meta_version_for(config)),
                    ("id_kind", config.id_kind.code()),
                    ("routing", config.routing.code()),
                    ("storage", config.storage.code()),
                    ("dim", config.dim as u64),
                    ("metric", config.metric.code() as u64),
                    ("m", config.m as u64),
                    ("m0", config.m0 as u64),
                    ("ef_construction", config.ef_construction as u64),
                    ("level_mult_bits", config.level_mult.to_bits()),
                    ("seed", config.seed),
                    ("index_uid", config.index_uid),
                ];
                for (k, v) in rows {
                    t.insert(k, v).map_err(db_err)?;
                }
                txn.open_table(IDS).map_err(db_err)?;
                txn.open_table(UPPER).map_err(db_err)?;
                txn.open_table(FREE).map_err(db_err)?;
                txn.open_table(TOMBSTONES).map_err(db_err)?;
                txn.open_table(PAYLOADS).map_err(db_err)?;
                txn.open_table(KEYS).map_err(db_err)?;
                txn.open_table(KEY_OF).map_err(db_err)?;
                let mut t = txn.open_table(FIELDS).map_err(db_err)?;
                for (name, kind) in fields {
                    t.insert(name.as_str(), kind).map_err(db_err)?;
                }
            }
            Self::write_state(&txn, &State::default())?;
            txn.commit().map_err(db_err)?;
            meta_check::seal(path);
            Ok(meta)
        })
    }

    /// Opens the database and reads configuration and state: O(1) in the index size.
    /// `read_only` opens change nothing in the file and may run beside the writer.
    pub fn open(path: &Path, cache_bytes: usize, read_only: bool) -> Result<(Meta, Config, State)> {
        guard(path, || {
            if !path.exists() {
                return Err(Error::NotFound(path.parent().unwrap_or(path).to_path_buf()));
            }
            let mut b = builder(cache_bytes);
            let db = if read_only {
                // A read-only open cannot run redb's check (it commits): it trusts the
                // file, and a panic on a damaged page is only caught (`guard`).
                Db::ReadOnly(b.open_read_only(path).map_err(|e| open_err(path, e))?)
            } else {
                // A file changed since the writer sealed it may be damaged anywhere: redb
                // verifies every page's checksum before trusting any (O(file)). A sealed
                // file opens in O(1).
                b.set_check_integrity_on_open(meta_check::suspect(path));
                let db = b.open(path).map_err(|e| open_err(path, e))?;
                // redb wrote to the file as it opened it (and checked it, if suspect).
                meta_check::seal(path);
                Db::Writable(db)
            };
            let pinned = match &db {
                Db::ReadOnly(_) => Some(db.begin_read().map_err(db_err)?),
                Db::Writable(_) => None,
            };
            let meta = Meta {
                _seal: Seal((!read_only).then(|| path.to_path_buf())),
                db,
                path: path.to_path_buf(),
                pinned,
            };
            let txn = meta.txn()?;
            let missing = |k: &str| Error::corrupt(path, format!("metadata lacks {k}"));
            let config = {
                let t = txn
                    .open_table(CONFIG)
                    .map_err(|e| Error::corrupt(path, format!("no config table: {e}")))?;
                let get = |k: &str| -> Result<u64> {
                    Ok(t.get(k).map_err(db_err)?.ok_or_else(|| missing(k))?.value())
                };
                let version = get("meta_version")?;
                if version > META_VERSION {
                    return Err(Error::UnsupportedVersion {
                        path: path.to_path_buf(),
                        found: version as u32,
                        supported: META_VERSION as u32,
                    });
                }
                let metric = u32::try_from(get("metric")?)
                    .ok()
                    .and_then(Metric::from_code)
                    .ok_or_else(|| Error::corrupt(path, "unknown metric code"))?;
                // Every value is range-checked before anything sizes memory or files by it.
                let in_range = |k: &str, range: std::ops::RangeInclusive<u64>| -> Result<usize> {
                    let v = get(k)?;
                    if range.contains(&v) {
                        Ok(v as usize)
                    } else {
                        Err(Error::corrupt(path, format!("{k} = {v} is out of range")))
                    }
                };
                let m = in_range("m", 2..=255)?;
                let config = Config {
                    dim: in_range("dim", 1..=MAX_DIM as u64)?,
                    metric,
                    m,
                    m0: in_range("m0", 2 * m as u64..=2 * m as u64)?,
                    ef_construction: in_range("ef_construction", 1..=MAX_EF as u64)?,
                    level_mult: f64::from_bits(get("level_mult_bits")?),
                    seed: get("seed")?,
                    index_uid: get("index_uid")?,
                    routing: match t.get("routing").map_err(db_err)? {
                        None => Routing::Sq8,
                        Some(code) => Routing::from_code(code.value())
                            .ok_or_else(|| Error::corrupt(path, "unknown routing code"))?,
                    },
                    storage: match t.get("storage").map_err(db_err)? {
                        None => Storage::F32,
                        Some(code) => Storage::from_code(code.value())
                            .ok_or_else(|| Error::corrupt(path, "unknown storage code"))?,
                    },
                    id_kind: match t.get("id_kind").map_err(db_err)? {
                        None => IdKind::Int,
                        Some(code) => IdKind::from_code(code.value())
                            .ok_or_else(|| Error::corrupt(path, "unknown id kind code"))?,
                    },
                };
                if !(config.level_mult.is_finite() && config.level_mult > 0.0) {
                    return Err(Error::corrupt(
                        path,
                        "level multiplier is not a positive number",
                    ));
                }
                config
            };
            let state = {
                let t = txn
                    .open_table(STATE)
                    .map_err(|e| Error::corrupt(path, format!("no state table: {e}")))?;
                let get = |k: &str| -> Result<u64> {
                    Ok(t.get(k).map_err(db_err)?.ok_or_else(|| missing(k))?.value())
                };
                let high_water = u32::try_from(get("high_water")?)
                    .ok()
                    .filter(|&h| h < u32::MAX)
                    .ok_or_else(|| Error::corrupt(path, "high-water mark out of range"))?;
                let entry = match get("entry_node")? {
                    u64::MAX => None,
                    node if node < high_water as u64 => Some(EntryPoint {
                        node: node as u32,
                        level: get("entry_level")? as usize,
                    }),
                    node => {
                        return Err(Error::corrupt(
                            path,
                            format!("entry node {node} is beyond the high-water mark {high_water}"),
                        ));
                    }
                };
                let live = get("live")?;
                if live > high_water as u64 {
                    return Err(Error::corrupt(path, "more live vectors than slots"));
                }
                State {
                    high_water,
                    live,
                    entry,
                    checkpoint_lsn: get("checkpoint_lsn")?,
                    level_draws: get("level_draws")?,
                    // Absent in indexes written before codes existed: no codes.
                    codes_generation: get("codes_generation").unwrap_or(0),
                    // Absent in indexes written before reader generations existed.
                    generation: get("generation").unwrap_or(0),
                    codes_trained_live: get("codes_trained_live").unwrap_or(0),
                    // Absent in indexes written before misfits were kept.
                    codes_misfits: get("codes_misfits").unwrap_or(0),
                    misfits_generation: get("misfits_generation").unwrap_or(0),
                    // Absent in indexes written before keys existed (integer ids).
                    next_id: get("next_id").unwrap_or(0),
                }
            };
            Ok((meta, config, state))
        })
    }

    fn txn(&self) -> Result<Txn<'_>> {
        Ok(match &self.pinned {
            Some(t) => Txn::Pinned(t),
            None => Txn::Fresh(self.db.begin_read().map_err(db_err)?),
        })
    }

    /// The generation of the latest commit (not of a read-only view's pinned one):
    /// whether the writer has checkpointed since a view was taken.
    pub fn latest_generation(&self) -> Result<u64> {
        guard(&self.path, || {
            let txn = self.db.begin_read().map_err(db_err)?;
            let t = txn.open_table(STATE).map_err(db_err)?;
            // Absent until the first checkpoint of a build that counts generations.
            Ok(t.get("generation")
                .map_err(db_err)?
                .map_or(0, |v| v.value()))
        })
    }

    /// The metadata file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names the file by `path` from now on: it was renamed (with its directory) while
    /// open, as a compaction does.
    pub fn renamed(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// The slots stored for external `ids` at the last checkpoint, in their order, read in one
    /// transaction: a batch's ids each in a transaction of its own cost an import a
    /// twentieth of its time (begin_read and open_table per id, under the write lock).
    pub fn lookup_many(&self, ids: &[u64]) -> Result<Vec<Option<u32>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = txn.open_table(IDS).map_err(db_err)?;
            (ids.iter())
                .map(|&id| Ok(t.get(id).map_err(db_err)?.map(|g| g.value())))
                .collect()
        })
    }

    /// The free slots at the last checkpoint.
    pub fn free_slots(&self) -> Result<Vec<u32>> {
        self.slot_set(FREE, false)
    }

    /// The tombstoned slots at the last checkpoint.
    pub fn tombstones(&self) -> Result<Vec<u32>> {
        self.slot_set(TOMBSTONES, false)
    }

    /// The slots whose vector the codes do not fit, at the last checkpoint (none in
    /// indexes written before they were kept).
    pub fn misfits(&self) -> Result<Vec<u32>> {
        self.slot_set(MISFITS, true)
    }

    /// The slots in `table`; none if it is `optional` and absent.
    fn slot_set(&self, table: TableDefinition<u32, ()>, optional: bool) -> Result<Vec<u32>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) if optional => return Ok(Vec::new()),
                Err(e) => return Err(db_err(e)),
            };
            t.iter()
                .map_err(db_err)?
                .map(|r| r.map(|(k, _)| k.value()).map_err(db_err))
                .collect()
        })
    }

    /// Every (external id, slot) pair at the last checkpoint.
    pub fn all_ids(&self) -> Result<Vec<(u64, u32)>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = txn.open_table(IDS).map_err(db_err)?;
            t.iter()
                .map_err(db_err)?
                .map(|r| r.map(|(k, v)| (k.value(), v.value())).map_err(db_err))
                .collect()
        })
    }

    /// One node's upper lists at the last checkpoint (empty: none).
    pub fn upper_of(&self, node: u32) -> Result<UpperLists> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = txn.open_table(UPPER).map_err(db_err)?;
            let mut lists = Vec::new();
            for row in t.range((node, 1u8)..=(node, u8::MAX)).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                if k.value().1 as usize != lists.len() + 1 || v.value().len() % 4 != 0 {
                    return Err(Error::corrupt(&self.path, "malformed upper-layer list"));
                }
                lists.push(
                    v.value()
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                );
            }
            Ok(lists)
        })
    }

    /// Every node's upper lists at the last checkpoint.
    pub fn upper_lists(&self) -> Result<Vec<(u32, UpperLists)>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = txn.open_table(UPPER).map_err(db_err)?;
            let mut out: Vec<(u32, UpperLists)> = Vec::new();
            for row in t.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let (node, level) = k.value();
                let bytes = v.value();
                if bytes.len() % 4 != 0 || level == 0 {
                    return Err(Error::corrupt(&self.path, "malformed upper-layer list"));
                }
                let list: Vec<u32> = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                // Keys sort by (node, level), so a node's levels arrive together and in order.
                match out.last_mut() {
                    Some((n, lists)) if *n == node && lists.len() + 1 == level as usize => {
                        lists.push(list)
                    }
                    _ if level == 1 => out.push((node, vec![list])),
                    _ => return Err(Error::corrupt(&self.path, "upper-layer levels have a gap")),
                }
            }
            Ok(out)
        })
    }

    /// The payload of `id` at the last checkpoint.
    pub fn payload(&self, id: u64) -> Result<Option<Vec<u8>>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(PAYLOADS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_err(e)),
            };
            Ok(t.get(id).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
    }

    /// The id `key` was bound to at the last checkpoint.
    pub fn key_id(&self, key: &str) -> Result<Option<u64>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(KEYS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_err(e)),
            };
            Ok(t.get(key).map_err(db_err)?.map(|v| v.value()))
        })
    }

    /// The keys `ids` were bound to at the last checkpoint, in order: one read
    /// transaction for all (a search answer names its k ids at once).
    pub fn keys_of(&self, ids: &[u64]) -> Result<Vec<Option<String>>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(KEY_OF) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; ids.len()]),
                Err(e) => return Err(db_err(e)),
            };
            ids.iter()
                .map(|&id| Ok(t.get(id).map_err(db_err)?.map(|v| v.value().to_string())))
                .collect()
        })
    }

    /// Every binding at the last checkpoint, as each table holds it: (key → id) from
    /// `keys` and (id → key) from `key_of`, for `verify` to compare.
    pub fn all_keys(&self) -> Result<Bindings> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let (keys, key_of) = match (txn.open_table(KEYS), txn.open_table(KEY_OF)) {
                (Ok(k), Ok(i)) => (k, i),
                (Err(redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(redb::TableError::TableDoesNotExist(_))) => {
                    return Ok((Vec::new(), Vec::new()));
                }
                (Err(e), _) | (_, Err(e)) => return Err(db_err(e)),
            };
            let forward = keys
                .iter()
                .map_err(db_err)?
                .map(|r| {
                    r.map(|(k, v)| (k.value().to_string(), v.value()))
                        .map_err(db_err)
                })
                .collect::<Result<_>>()?;
            let backward = key_of
                .iter()
                .map_err(db_err)?
                .map(|r| {
                    r.map(|(k, v)| (k.value(), v.value().to_string()))
                        .map_err(db_err)
                })
                .collect::<Result<_>>()?;
            Ok((forward, backward))
        })
    }

    /// Calls `f` with every (id, payload) at the last checkpoint, in id order.
    pub fn for_each_payload(&self, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(PAYLOADS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(db_err(e)),
            };
            for row in t.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                f(k.value(), v.value())?;
            }
            Ok(())
        })
    }

    /// The indexed payload fields: (name, kind code), in name order.
    pub fn fields(&self) -> Result<Vec<(String, u64)>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(FIELDS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(db_err(e)),
            };
            t.iter()
                .map_err(db_err)?
                .map(|r| {
                    r.map(|(k, v)| (k.value().to_string(), v.value()))
                        .map_err(db_err)
                })
                .collect()
        })
    }

    /// Declares one more indexed field, durably (its own commit: it changes no other
    /// state, and the field's index is derived from the payloads). The commit is the
    /// state's `generation`, so that read-only views reopen to see the field.
    pub fn add_field(&self, name: &str, kind: u64, generation: u64) -> Result<()> {
        guard(&self.path, || {
            let txn = self.db.begin_write()?;
            txn.open_table(FIELDS)
                .map_err(db_err)?
                .insert(name, kind)
                .map_err(db_err)?;
            txn.open_table(STATE)
                .map_err(db_err)?
                .insert("generation", generation)
                .map_err(db_err)?;
            upgrade_version(&txn)?;
            failpoints::before_sync(&self.path).map_err(|e| Error::io(&self.path, e))?;
            txn.commit().map_err(db_err)?;
            meta_check::seal(&self.path);
            failpoints::synced(&self.path, None);
            Ok(())
        })
    }

    /// The quantiser of the current code generation (`None` if none was stored) of an
    /// index of `dim` dimensions and `routing` (which owns a RaBitQ quantiser's bits).
    pub fn quantizer(&self, dim: usize, routing: Routing) -> Result<Option<Quantizer>> {
        guard(&self.path, || {
            let txn = self.txn()?;
            let t = match txn.open_table(SQ8) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_err(e)),
            };
            let read = |key: &str, len: usize| -> Result<Option<Vec<u8>>> {
                let Some(v) = t.get(key).map_err(db_err)? else {
                    return Ok(None);
                };
                let bytes = v.value();
                if bytes.len() != len {
                    return Err(Error::corrupt(
                        &self.path,
                        format!("quantiser {key} has the wrong length"),
                    ));
                }
                Ok(Some(bytes.to_vec()))
            };
            let floats = |bytes: Vec<u8>| -> Vec<f32> {
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            };
            if let Some(seed) = read("rabitq_seed", 8)? {
                let centroid = read("rabitq_centroid", dim * 4)?.ok_or_else(|| {
                    Error::corrupt(&self.path, "RaBitQ quantiser without its centroid")
                })?;
                let seed = u64::from_le_bytes(seed.try_into().unwrap());
                // An SQ8 routing with a RaBitQ quantiser is refused by the caller.
                let bits = routing.rabitq_bits().unwrap_or(1);
                return Ok(Some(Quantizer::RaBitQ(RaBitQ::new(
                    seed,
                    floats(centroid),
                    bits,
                ))));
            }
            Ok(match (read("offset", dim * 4)?, read("scale", dim * 4)?) {
                (Some(offset), Some(scale)) => Some(Quantizer::Sq8(Sq8::from_parts(
                    floats(offset),
                    floats(scale),
                ))),
                _ => None,
            })
        })
    }

    /// Applies one checkpoint's changes in a single durable transaction.
    pub fn commit(&self, changes: &Changes<'_>) -> Result<()> {
        guard(&self.path, || {
            let txn = self.db.begin_write()?;
            {
                let mut ids = txn.open_table(IDS).map_err(db_err)?;
                for (&id, &slot) in changes.ids {
                    match slot {
                        Some(s) => ids.insert(id, s).map_err(db_err)?,
                        None => ids.remove(id).map_err(db_err)?,
                    };
                }
                let mut free = txn.open_table(FREE).map_err(db_err)?;
                let mut tombs = txn.open_table(TOMBSTONES).map_err(db_err)?;
                for (&slot, &state) in changes.slots {
                    free.remove(slot).map_err(db_err)?;
                    tombs.remove(slot).map_err(db_err)?;
                    match state {
                        SlotState::Free => free.insert(slot, ()).map_err(db_err)?,
                        SlotState::Tombstone => tombs.insert(slot, ()).map_err(db_err)?,
                        SlotState::Live => None,
                    };
                }
                let mut upper = txn.open_table(UPPER).map_err(db_err)?;
                for (node, lists) in changes.upper {
                    // Drop every stored level of the node, then write the current ones.
                    let stale: Vec<(u32, u8)> = upper
                        .range((*node, 0u8)..=(*node, u8::MAX))
                        .map_err(db_err)?
                        .map(|r| r.map(|(k, _)| k.value()).map_err(db_err))
                        .collect::<Result<_>>()?;
                    for key in stale {
                        upper.remove(key).map_err(db_err)?;
                    }
                    for (i, list) in lists.iter().flatten().enumerate() {
                        let bytes: Vec<u8> = list.iter().flat_map(|x| x.to_le_bytes()).collect();
                        upper
                            .insert((*node, (i + 1) as u8), bytes.as_slice())
                            .map_err(db_err)?;
                    }
                }
            }
            if let Some(quantizer) = changes.quantizer {
                let mut t = txn.open_table(SQ8).map_err(db_err)?;
                let floats =
                    |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
                match quantizer {
                    Quantizer::Sq8(sq8) => {
                        t.insert("offset", floats(sq8.offset()).as_slice())
                            .map_err(db_err)?;
                        t.insert("scale", floats(sq8.scale()).as_slice())
                            .map_err(db_err)?;
                    }
                    Quantizer::RaBitQ(q) => {
                        t.insert("rabitq_seed", q.seed().to_le_bytes().as_slice())
                            .map_err(db_err)?;
                        t.insert("rabitq_centroid", floats(q.centroid()).as_slice())
                            .map_err(db_err)?;
                    }
                }
            }
            if let Some(misfits) = changes.misfits {
                txn.delete_table(MISFITS).map_err(db_err)?;
                let mut t = txn.open_table(MISFITS).map_err(db_err)?;
                for &slot in misfits {
                    t.insert(slot, ()).map_err(db_err)?;
                }
            }
            if !changes.payloads.is_empty() {
                let mut t = txn.open_table(PAYLOADS).map_err(db_err)?;
                for (&id, payload) in changes.payloads {
                    match payload {
                        Some(bytes) => t.insert(id, bytes.as_slice()).map_err(db_err)?,
                        None => t.remove(id).map_err(db_err)?,
                    };
                }
            }
            Self::commit_keys(&txn, changes)?;
            // A version-1 database becomes version 2 here (the tables it lacked are
            // created as they are first written).
            upgrade_version(&txn)?;
            Self::write_state(&txn, changes.state)?;
            failpoints::before_sync(&self.path).map_err(|e| Error::io(&self.path, e))?;
            txn.commit().map_err(db_err)?;
            meta_check::seal(&self.path);
            failpoints::synced(&self.path, None);
            Ok(())
        })
    }

    /// Writes the key bindings that changed since the last checkpoint, both ways.
    fn commit_keys(txn: &redb::WriteTransaction, changes: &Changes<'_>) -> Result<()> {
        if changes.keys.is_empty() && changes.key_of.is_empty() {
            return Ok(());
        }
        let mut keys = txn.open_table(KEYS).map_err(db_err)?;
        for (key, id) in changes.keys {
            match id {
                Some(id) => keys.insert(key.as_str(), id).map_err(db_err)?,
                None => keys.remove(key.as_str()).map_err(db_err)?,
            };
        }
        let mut key_of = txn.open_table(KEY_OF).map_err(db_err)?;
        for (&id, key) in changes.key_of {
            match key {
                Some(key) => key_of.insert(id, key.as_str()).map_err(db_err)?,
                None => key_of.remove(id).map_err(db_err)?,
            };
        }
        Ok(())
    }

    fn write_state(txn: &redb::WriteTransaction, s: &State) -> Result<()> {
        let mut t = txn.open_table(STATE).map_err(db_err)?;
        let (node, level) = s
            .entry
            .map_or((u64::MAX, 0), |e| (e.node as u64, e.level as u64));
        let rows: [(&str, u64); 12] = [
            ("high_water", s.high_water as u64),
            ("live", s.live),
            ("entry_node", node),
            ("entry_level", level),
            ("checkpoint_lsn", s.checkpoint_lsn),
            ("level_draws", s.level_draws),
            ("codes_generation", s.codes_generation),
            ("codes_trained_live", s.codes_trained_live),
            ("codes_misfits", s.codes_misfits),
            ("misfits_generation", s.misfits_generation),
            ("generation", s.generation),
            ("next_id", s.next_id),
        ];
        for (k, v) in rows {
            t.insert(k, v).map_err(db_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn config() -> Config {
        Config {
            dim: 3,
            metric: Metric::Cosine,
            m: 4,
            m0: 8,
            ef_construction: 20,
            level_mult: 0.7,
            seed: 5,
            index_uid: 99,
            routing: Routing::Sq8,
            storage: Storage::F16,
            id_kind: IdKind::Str,
        }
    }

    #[test]
    fn configuration_and_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE_NAME);
        drop(Meta::create(&path, &config(), &[], 1 << 20).unwrap());
        let (meta, cfg, state) = Meta::open(&path, 1 << 20, false).unwrap();
        assert_eq!(cfg, config());
        assert_eq!(state, State::default());
        assert!(meta.quantizer(3, Routing::Sq8).unwrap().is_none());
        assert!(matches!(
            Meta::open(&dir.path().join("absent"), 1 << 20, false),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn a_commit_stores_every_change_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE_NAME);
        let meta = Meta::create(&path, &config(), &[], 1 << 20).unwrap();
        let ids = HashMap::from([(10, Some(0)), (11, Some(1)), (12, Some(2))]);
        let slots = HashMap::from([
            (0, SlotState::Live),
            (1, SlotState::Tombstone),
            (2, SlotState::Live),
            (3, SlotState::Free),
        ]);
        let upper = vec![(2, Some(vec![vec![0], vec![]]))];
        let state = State {
            high_water: 4,
            live: 2,
            entry: Some(EntryPoint { node: 2, level: 2 }),
            checkpoint_lsn: 17,
            level_draws: 4,
            codes_generation: 1,
            codes_trained_live: 2,
            codes_misfits: 1,
            misfits_generation: 1,
            generation: 3,
            next_id: 13,
        };
        let sq8 = Quantizer::Sq8(Sq8::from_parts(vec![0.0; 3], vec![1.0; 3]));
        meta.commit(&Changes {
            ids: &ids,
            slots: &slots,
            upper: &upper,
            state: &state,
            quantizer: Some(&sq8),
            misfits: Some(&[0, 2]),
            payloads: &HashMap::from([
                (10, Some(b"{}".to_vec())),
                (12, Some(b"{\"a\":1}".to_vec())),
            ]),
            keys: &HashMap::from([("a".to_string(), Some(10)), ("b".to_string(), Some(11))]),
            key_of: &HashMap::from([(10, Some("a".to_string())), (11, Some("b".to_string()))]),
        })
        .unwrap();
        // A second commit removes an id and a node's upper lists, and replaces the misfits.
        let ids = HashMap::from([(11, None)]);
        let upper = vec![(2, None), (0, Some(vec![vec![2]]))];
        meta.commit(&Changes {
            ids: &ids,
            slots: &HashMap::new(),
            upper: &upper,
            state: &state,
            quantizer: None,
            misfits: Some(&[2]),
            payloads: &HashMap::from([(10, None)]),
            keys: &HashMap::from([("b".to_string(), None)]),
            key_of: &HashMap::from([(11, None)]),
        })
        .unwrap();
        drop(meta);
        let (meta, _, reopened) = Meta::open(&path, 1 << 20, false).unwrap();
        assert_eq!(reopened, state);
        assert_eq!(meta.all_ids().unwrap(), [(10, 0), (12, 2)]);
        assert_eq!(meta.lookup_many(&[11]).unwrap(), [None]);
        assert_eq!(meta.free_slots().unwrap(), [3]);
        assert_eq!(meta.misfits().unwrap(), [2]);
        assert_eq!(meta.tombstones().unwrap(), [1]);
        assert_eq!(meta.upper_lists().unwrap(), [(0, vec![vec![2]])]);
        assert!(meta.upper_of(2).unwrap().is_empty());
        assert_eq!(meta.quantizer(3, Routing::Sq8).unwrap(), Some(sq8));
        assert!(matches!(
            meta.quantizer(4, Routing::Sq8),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(meta.payload(10).unwrap(), None);
        assert_eq!(meta.payload(12).unwrap().unwrap(), br#"{"a":1}"#);
        assert_eq!(meta.key_id("a").unwrap(), Some(10));
        assert_eq!(meta.key_id("b").unwrap(), None);
        assert_eq!(
            meta.keys_of(&[10, 11]).unwrap(),
            [Some("a".to_string()), None]
        );
        assert_eq!(
            meta.all_keys().unwrap(),
            (vec![("a".to_string(), 10)], vec![(10, "a".to_string())])
        );
    }

    #[test]
    fn malformed_upper_lists_are_corrupt_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE_NAME);
        let meta = Meta::create(&path, &config(), &[], 1 << 20).unwrap();
        // Level 2 without level 1, and a list whose bytes are not whole ids.
        let txn = meta.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(UPPER).unwrap();
            t.insert((5, 2), [0u8; 4].as_slice()).unwrap();
            t.insert((6, 1), [0u8; 3].as_slice()).unwrap();
        }
        txn.commit().unwrap();
        assert!(matches!(meta.upper_of(5), Err(Error::Corrupt { .. })));
        assert!(matches!(meta.upper_of(6), Err(Error::Corrupt { .. })));
        assert!(matches!(meta.upper_lists(), Err(Error::Corrupt { .. })));
    }
}

#[cfg(test)]
mod damaged {
    use super::*;

    /// Every 4 KiB page of a sealed, cleanly closed file zeroed in turn (redb trusts such a
    /// file's pages, and panics on some zeroed ones): a plain redb open panics on at least
    /// one copy, while `Meta::open` sees the file changed, has redb check it first, and
    /// never meets a panic.
    #[test]
    fn a_file_changed_behind_the_writer_is_checked_before_redb_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE_NAME);
        let cfg = tests::config();
        drop(Meta::create(&path, &cfg, &[], 1 << 20).unwrap());
        drop(Meta::open(&path, 1 << 20, false).unwrap());
        assert!(
            !meta_check::suspect(&path),
            "the writer sealed the file as it left it"
        );
        let pristine = std::fs::read(&path).unwrap();
        let (mut plain_panics, mut refused) = (0, 0);
        for page in 1..pristine.len() / 4096 {
            let mut bytes = pristine.clone();
            bytes[page * 4096..(page + 1) * 4096].fill(0);
            std::fs::write(&path, &bytes).unwrap();
            assert!(meta_check::suspect(&path));
            let plain = meta_check::catch(|| builder(1 << 20).open(&path).map(drop));
            plain_panics += usize::from(plain.is_err());
            std::fs::write(&path, &bytes).unwrap();
            match Meta::open(&path, 1 << 20, false) {
                Ok(_) => {}
                Err(Error::Corrupt { reason, .. }) => {
                    assert!(!reason.contains("internal check"), "page {page}: {reason}");
                    refused += 1;
                }
                Err(e) => panic!("page {page}: {e}"),
            }
        }
        assert!(plain_panics > 0, "no zeroed page made a plain open panic");
        assert!(refused >= plain_panics);
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// Open time of a metadata file holding `HNSWDB_META_IDS` (default 1M) ids, with and
    /// without redb's integrity check: what checking a suspect file costs.
    #[test]
    #[ignore]
    fn open_cost() {
        let n: u64 = std::env::var("HNSWDB_META_IDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE_NAME);
        let cfg = tests::config();
        let meta = Meta::create(&path, &cfg, &[], 1 << 26).unwrap();
        let ids: HashMap<u64, Option<u32>> = (0..n).map(|i| (i * 7, Some(i as u32))).collect();
        let upper: Vec<(u32, Option<UpperLists>)> = (0..n as u32 / 16)
            .map(|i| (i * 16, Some(vec![(0..16).collect()])))
            .collect();
        let state = State {
            high_water: n as u32,
            live: n,
            ..State::default()
        };
        meta.commit(&Changes {
            ids: &ids,
            slots: &HashMap::new(),
            upper: &upper,
            state: &state,
            quantizer: None,
            misfits: None,
            payloads: &HashMap::new(),
            keys: &HashMap::new(),
            key_of: &HashMap::new(),
        })
        .unwrap();
        drop(meta);
        let len = std::fs::metadata(&path).unwrap().len();
        for check in [false, true, false, true] {
            let t = std::time::Instant::now();
            let mut b = builder(1 << 26);
            b.set_check_integrity_on_open(check);
            drop(b.open(&path).unwrap());
            eprintln!("{n} ids, {len} bytes, check {check}: {:?}", t.elapsed());
        }
    }
}
