//! Checkpoints: the page files made durable, then one metadata commit that names
//! everything the log said since the last one, then the log dropped. Also where deletes
//! are consolidated and the SQ8 codes (re)trained, since both need the exclusive lock a
//! checkpoint holds anyway, and the background thread of `Durability::Periodic`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLockWriteGuard};

use super::write::Ledger;
use super::{Index, Poison};
use crate::distance::{Quantizer, RaBitQ, Sq8};
use crate::error::{Error, Result};
use crate::graph::{Graph, Quantized};
use crate::store::{Changes, CodeKind, Codes, State, codes};
use crate::wal::Wal;

/// A write makes a checkpoint due once one in this many live vectors were inserted
/// outside the trained ranges since the codes were (`Quantized::misfits`).
pub(super) const MISFITS_DUE: u64 = 10;

/// A checkpoint retrains once one in this many live vectors are such misfits (walks
/// score each of them exactly, from its vector, a read under a memory budget). Vectors
/// in the tails the training left out rarely misfit (clamping must move them more than four
/// steps' norm, `Sq8::fits`), so data that does not drift does not retrain at every
/// checkpoint, which would rewrite the whole code file each time.
const MISFITS_RETRAIN: u64 = 100;

/// Vectors sampled to train a quantiser.
const SQ8_SAMPLE: usize = 100_000;

/// Stops the periodic-sync thread when the index is dropped.
pub(super) struct Syncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Syncs `wal` every `every`; a failed sync poisons the index (see `checkpoint_inner`:
    /// a retried fsync cannot be trusted) and ends the thread.
    pub(super) fn start(wal: Arc<Wal>, every: Duration, poison: Arc<Poison>) -> Syncer {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*flag;
            let mut stopped = lock.lock();
            while !*stopped {
                cv.wait_for(&mut stopped, every);
                if let Err(e) = wal.sync_all() {
                    poison.set(&e);
                    return;
                }
            }
        });
        Syncer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Index {
    /// Makes everything written so far durable and shortens recovery: consolidates deleted
    /// nodes if enough have gathered, msyncs the page files, commits the metadata with the
    /// checkpoint LSN, then drops the log before it. Runs automatically as the log grows.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_inner(false)
    }

    /// A checkpoint that also consolidates every deleted node, however few, and links any
    /// unreachable node back into the graph: after it, every link points at a live node,
    /// every live node is reachable and every freed slot is reusable. O(n).
    pub fn consolidate(&self) -> Result<()> {
        self.checkpoint_inner(true)
    }

    /// A checkpoint. Any failure poisons the index: a failed msync or fsync may have
    /// dropped dirty pages that a retry would then report durable (the PostgreSQL
    /// "fsyncgate" lesson), and a failed commit leaves the metadata's state unknown. The
    /// writes logged so far are durable in the log either way; a reopen replays it.
    fn checkpoint_inner(&self, force_consolidate: bool) -> Result<()> {
        let wal = self.writable_log()?;
        self.checkpoint_locked(wal, force_consolidate)
            .inspect_err(|e| self.poison.set(e))
    }

    /// Consolidates and retrains, if due, under the graph's write lock; then, unless
    /// codes were retrained (installing them needs the write lock again), downgrades it
    /// so that searches run beside the checkpoint's I/O. Writers wait on the ledger.
    fn checkpoint_locked(&self, wal: &Wal, force_consolidate: bool) -> Result<()> {
        let graph = self.graph.write();
        let mut p = self.ledger.lock();
        let freeing = if force_consolidate || Self::consolidation_due(&p) {
            let dead: Vec<u32> = p.slots.tombstones().collect();
            // Relinks around the dead in the page files only: until the metadata commit,
            // a crash brings the tombstones back (from metadata and log), and a graph
            // already relinked around them is still a valid graph. The allocator frees
            // them only once that commit has succeeded.
            graph.consolidate(&dead, p.slots.high_water(), self.threads())?;
            // Relinking around many dead nodes is where in-links are most often lost.
            graph.reconnect(p.slots.high_water())?;
            dead
        } else {
            Vec::new()
        };
        // Codes trained ahead of a batch (`train_ahead`) are named by this commit.
        let ahead = graph
            .quantized()
            .is_some_and(|q| q.generation != p.codes_generation);
        let mut due = !ahead
            && (self.training_due(&p, &graph, MISFITS_RETRAIN) || codes_outgrown(&graph, &mut p));
        let trained = match due {
            true => match self.train_codes(&graph, &p, &[]) {
                // Codes are derived data: a disk too full for a new code file keeps the
                // ones in use, and the checkpoint goes on (an open after a crash on a
                // full disk replays and checkpoints; it must not fail for this). The
                // next attempt waits for the next check, not the next write.
                Err(Error::DiskFull { .. }) => {
                    due = false;
                    (p.written_since_check, p.codes_outgrown) = (0, false);
                    None
                }
                trained => trained?,
            },
            false => None,
        };
        // A declined retraining drops the codes in use: the data has outgrown them, and
        // is walked on exact vectors until a training resolves it.
        let dropped = due && trained.is_none() && graph.quantized().is_some();
        if due && trained.is_none() {
            p.codes_outgrown = false;
            p.codes_trained_live = p.slots.live();
            if dropped {
                p.codes_generation = 0;
            }
        }
        if trained.is_some() || dropped {
            let mut graph = graph;
            self.commit_checkpoint(wal, &graph, &mut p, &freeing, trained.as_ref())?;
            // The metadata now names the new generation (or none): searches may use it,
            // and the old file is garbage (a crash before this removal leaves it for
            // `open`).
            let old = graph
                .quantized()
                .map(|o| o.codes.file().path().to_path_buf());
            graph.set_quantized(trained);
            if let Some(old) = old {
                let _ = std::fs::remove_file(old);
            }
            Ok(())
        } else {
            let graph = RwLockWriteGuard::downgrade(graph);
            let trained = graph.quantized().filter(|_| ahead);
            self.commit_checkpoint(wal, &graph, &mut p, &freeing, trained)
        }
    }

    /// Trains the first quantiser before a batch of `rows` that takes the index past
    /// `quantize_after`, on a sample of its live vectors and of `rows`, so that the batch
    /// is built walking codes. A checkpoint would train them only after the batch: a
    /// single large `insert_batch` (Python's `add_items`) then built on exact distances
    /// throughout, where an import in chunks walks codes from its second chunk on.
    ///
    /// The new code file is named by the next checkpoint's commit (`checkpoint_locked`
    /// sees that its generation is not the ledger's); a crash before then leaves it
    /// unreferenced, as one from a checkpoint that crashed before its commit, and the
    /// reopened index walks exact vectors until it trains again. A failure poisons the
    /// index as a failed checkpoint does: a retried fsync of the file cannot be trusted.
    pub(super) fn train_ahead(&self, rows: &[Vec<f32>]) -> Result<()> {
        let due = |graph: &Graph, p: &Ledger| {
            graph.quantized().is_none()
                && self.options.quantize_after != u64::MAX
                && p.slots.live() < self.options.quantize_after
                && p.slots.live() + rows.len() as u64 >= self.options.quantize_after
        };
        // Most batches find codes already there: decide that under the shared lock.
        if !due(&self.graph.read(), &self.ledger.lock()) {
            return Ok(());
        }
        let mut graph = self.graph.write();
        let mut p = self.ledger.lock();
        if !due(&graph, &p) {
            return Ok(());
        }
        let trained = self
            .train_codes(&graph, &p, rows)
            .inspect_err(|e| self.poison.set(e))?;
        match trained {
            Some(trained) => {
                graph.set_quantized(Some(trained));
                (p.written_since_check, p.codes_outgrown) = (0, false);
            }
            // Declined: the next attempt waits until the live count has doubled.
            None => p.codes_trained_live = p.slots.live() + rows.len() as u64,
        }
        Ok(())
    }

    /// Makes the page files durable, commits the metadata (with `freeing` free and
    /// `trained` as the new codes), then tells the slot allocator, and drops the log
    /// before the checkpoint. No insert can be under way: the caller took the graph's
    /// write lock, and holds the ledger.
    fn commit_checkpoint(
        &self,
        wal: &Wal,
        graph: &Graph,
        p: &mut Ledger,
        freeing: &[u32],
        trained: Option<&Quantized>,
    ) -> Result<()> {
        graph.sync()?;
        let checkpoint_lsn = wal.next_lsn();
        let upper = graph.dirty_upper();
        // The codes this commit names: new ones, else those in use (unless dropped).
        let codes = trained.or(graph
            .quantized()
            .filter(|q| q.generation == p.codes_generation));
        let misfits = codes.and_then(|q| {
            q.forget_misfits(freeing);
            // A new code file starts with its own set; else only a changed one is written.
            let dirty = q.take_misfits_dirty();
            (trained.is_some() || dirty)
                .then(|| q.misfit_slots())
                .flatten()
        });
        let (codes_generation, codes_trained_live) = match trained {
            Some(q) => (q.generation, p.slots.live()),
            None => (p.codes_generation, p.codes_trained_live),
        };
        let state = State {
            high_water: p.slots.high_water(),
            live: p.slots.live(),
            entry: graph.entry(),
            checkpoint_lsn,
            level_draws: p.level_draws,
            codes_generation,
            codes_trained_live,
            codes_misfits: codes.map_or(0, |q| q.trained_misfits()),
            misfits_generation: codes
                .filter(|q| q.misfits_known())
                .map_or(0, |q| q.generation),
            generation: p.generation + 1,
            next_id: p.next_id,
        };
        self.meta().commit(&Changes {
            ids: &p.ids,
            slots: &p.slots.changes_freeing(freeing),
            upper: &upper,
            state: &state,
            quantizer: trained.map(|q| &q.quantizer),
            misfits: misfits.as_deref(),
            payloads: &p.payloads,
            keys: &p.keys,
            key_of: &p.key_of,
        })?;
        graph.clear_upper_dirty();
        p.slots.committed(freeing, state.generation);
        p.generation = state.generation;
        p.codes_generation = codes_generation;
        p.codes_trained_live = codes_trained_live;
        if trained.is_some() {
            (p.written_since_check, p.codes_outgrown) = (0, false);
        }
        p.ids.clear();
        p.payloads.clear();
        p.keys.clear();
        p.key_of.clear();
        self.release_held_slots(p)?;
        wal.truncate_before(checkpoint_lsn)
    }

    /// Frees for reuse the held slots that no registered reader can still see in use.
    pub(super) fn release_held_slots(&self, p: &mut Ledger) -> Result<()> {
        if let Some(readers) = &self.readers {
            p.slots.release(readers.oldest()?);
        }
        Ok(())
    }

    /// Whether a checkpoint should (re)train the quantiser: first once the index has
    /// `quantize_after` vectors, then whenever it has doubled since the last training,
    /// so that component ranges follow the data at amortised O(1) cost per insert, or
    /// when one in `one_in` live vectors were inserted outside the trained ranges since
    /// (data that drifts: their codes blur them together; misfits the training itself
    /// left do not count, as retraining would leave them again): `MISFITS_DUE` when a
    /// write asks whether to checkpoint, `MISFITS_RETRAIN` at a checkpoint.
    pub(super) fn training_due(&self, p: &Ledger, graph: &Graph, one_in: u64) -> bool {
        match graph.quantized() {
            // Twice the live count of a declined training, if any.
            None => {
                p.slots.live()
                    >= (self.options.quantize_after).max(p.codes_trained_live.saturating_mul(2))
            }
            Some(q) => {
                self.options.quantize_after != u64::MAX
                    && (p.slots.live()
                        >= p.codes_trained_live
                            .max(self.options.quantize_after)
                            .saturating_mul(2)
                        || q.new_misfits() > 0
                            && q.new_misfits().saturating_mul(one_in) >= p.slots.live())
            }
        }
    }

    /// Trains a quantiser on (a sample of) the live vectors and the rows of `ahead` (a
    /// batch about to be inserted) and writes the codes of every routable node into a new
    /// code file, `codes.<generation + 1>`, synced. Nothing refers to the file until a
    /// checkpoint's metadata commit names its generation. None if SQ8 codes would not
    /// tell the sample's vectors from their neighbours (`Sq8::resolves`): walks then use
    /// exact vectors (a checkpoint drops codes in use), and training waits until the
    /// live count has doubled.
    fn train_codes(
        &self,
        graph: &Graph,
        p: &Ledger,
        ahead: &[Vec<f32>],
    ) -> Result<Option<Quantized>> {
        let (rows, step) = sample_live(graph, p, ahead.len(), SQ8_SAMPLE);
        let sample: Vec<&[f32]> = (rows.iter().map(|r| &**r))
            .chain(ahead.iter().step_by(step).map(|r| &r[..]))
            .collect();
        let quantizer = match self.config.routing.rabitq_bits() {
            None => match Sq8::train(self.config.dim, sample.iter().copied()) {
                sq8 if sq8.resolves(&sample, p.slots.live() + ahead.len() as u64) => {
                    Quantizer::Sq8(sq8)
                }
                _ => return Ok(None),
            },
            // The rotation's seed is the index's, drawn anew at each training (the codes
            // of a generation are all made with one).
            Some(bits) => Quantizer::RaBitQ(RaBitQ::train(
                self.config.dim,
                self.config.seed ^ (p.codes_generation + 1).rotate_left(17),
                bits,
                sample.into_iter(),
            )),
        };
        let generation = p.codes_generation + 1;
        let path = self.dir.join(codes::file_name(generation));
        if path.exists() {
            // Left by a checkpoint that crashed before its commit: never referenced.
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let codes = Codes::create(
            &path,
            CodeKind::of(self.config.routing),
            self.config.file_identity(),
            graph.capacity(),
        )?;
        codes.file().advise(false);
        let kernels = (self.config.metric, self.kernels);
        let trained = Quantized::new(quantizer, codes, generation, kernels, Some(&[]), 0);
        graph.encode_routable(&trained, p.slots.high_water(), self.threads());
        trained.codes.file().sync()?;
        Ok(Some(trained))
    }

    /// Makes every write so far durable: a checkpoint. After it returns, a reopen sees
    /// every write made before it, whatever the durability mode. A read-only index has
    /// nothing to make durable: it returns at once.
    pub fn flush(&self) -> Result<()> {
        if self.wal.is_none() {
            return Ok(());
        }
        self.checkpoint()
    }

    /// Checkpoints and closes the index, reporting any error (dropping it checkpoints
    /// too, but cannot report, and never relocates). Closing a read-only index writes
    /// nothing. Once deletes have freed more than
    /// [`OpenOptions::relocate_above`](super::OpenOptions::relocate_above) of the slots,
    /// it then relocates the index into dense files ([`Index::relocate`]); an error there
    /// leaves the index whole (old or relocated) with every write.
    pub fn close(self) -> Result<()> {
        self.flush()?;
        if !self.relocation_due() {
            return Ok(());
        }
        self.relocate()?.0.close()
    }
}

/// Every `step`-th live vector, `step` chosen so that they and as many of `extra` more
/// rows make at most `most` (borrowed in place when stored as f32), and the step.
fn sample_live<'g>(
    graph: &'g Graph,
    p: &Ledger,
    extra: usize,
    most: usize,
) -> (Vec<Cow<'g, [f32]>>, usize) {
    let live: Vec<u32> = (0..p.slots.high_water())
        .filter(|&s| graph.is_live(s))
        .collect();
    let step = (live.len() + extra).div_ceil(most).max(1);
    let rows = (live.iter().step_by(step))
        .map(|&s| graph.vectors().vector(s).to_f32())
        .collect();
    (rows, step)
}

/// Whether the codes in use no longer fit the live vectors, checked once a quarter of
/// the live count has been written (inserted, or replacing vectors) since the codes were
/// trained or last checked. SQ8: whether they still tell a sample of the vectors apart
/// (`Sq8::resolves`). Vectors inside the trained ranges are no misfits, yet a tight
/// cluster of them can share a few codes: 3,000 of σ 0.01 added to 6,000 of N(0, 1)
/// (8-d) answered queries in the cluster at recall@10 0.53 at ef 64 (hnswlib 1.0), and
/// nothing retrained until the live count doubled. RaBitQ: whether the sample's mean has
/// moved from the trained centroid by more than `RABITQ_DRIFT` of the sample's spread.
/// Codes of residuals from a centroid the data has left estimate poorly, and data that
/// drifts at a constant size never doubles: 4,000 16-d vectors, half replaced by ones
/// shifted 3 further per round for 6 rounds, were found at recall@10 0.62 at ef 64 on
/// 4-bit codes (a fresh build 1.0), 0.13 on 1-bit (0.68).
///
/// Run by the write that makes the check due, which then asks for a checkpoint only if
/// the codes are outgrown (the checkpoint retrains them); the answer waits in the ledger.
pub(super) fn codes_outgrown(graph: &Graph, p: &mut Ledger) -> bool {
    if !codes_check_due(graph, p) {
        return p.codes_outgrown;
    }
    let Some(quantizer) = graph.quantized().map(|q| &q.quantizer) else {
        return false;
    };
    p.written_since_check = 0;
    let (rows, _) = sample_live(graph, p, 0, CHECK_SAMPLE);
    let sample: Vec<&[f32]> = rows.iter().map(|r| &**r).collect();
    p.codes_outgrown = match quantizer {
        Quantizer::Sq8(sq8) => !sq8.resolves(&sample, p.slots.live()),
        Quantizer::RaBitQ(rabitq) => drifted(rabitq.centroid(), &sample),
    };
    p.codes_outgrown
}

/// Live vectors sampled by a check of the codes in use (`codes_outgrown`): a tenth of a
/// training's, as checks come every quarter of the live count written.
const CHECK_SAMPLE: usize = 10_000;

/// How far the data's mean may move from a RaBitQ centroid, as a fraction of the data's
/// spread (the root mean square distance from the mean), before the codes retrain.
const RABITQ_DRIFT: f32 = 0.25;

/// Whether the mean of `sample` lies further than `RABITQ_DRIFT` of its spread from
/// `centroid`.
fn drifted(centroid: &[f32], sample: &[&[f32]]) -> bool {
    if sample.is_empty() {
        return false;
    }
    let n = sample.len() as f64;
    let mut mean = vec![0f64; centroid.len()];
    for row in sample {
        for (m, &x) in mean.iter_mut().zip(row.iter()) {
            *m += x as f64 / n;
        }
    }
    let spread = sample
        .iter()
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&x, m)| (x as f64 - m).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / n;
    let moved: f64 = mean
        .iter()
        .zip(centroid)
        .map(|(m, &c)| (m - c as f64).powi(2))
        .sum();
    moved > (RABITQ_DRIFT as f64).powi(2) * spread
}

/// Whether `codes_outgrown` would check the codes in use: a quarter of the live count has
/// been written since they were trained or last checked.
fn codes_check_due(graph: &Graph, p: &Ledger) -> bool {
    graph.quantized().is_some() && p.written_since_check >= (p.slots.live() / 4).max(1)
}
