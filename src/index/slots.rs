//! The slot allocator: the one owner of a vector slot's life,
//! *live* → *tombstoned* → *held* → *free* → *live* again.
//!
//! - A delete (or the upsert that replaces a vector) tombstones its slot: gone from results,
//!   still routed through.
//! - A checkpoint that consolidates relinks the graph around the tombstones, makes the page
//!   files durable and commits the metadata with those slots free. Only once that commit
//!   has succeeded does the allocator learn they are free ([`Slots::committed`]): a crash
//!   or a failed sync before it leaves them tombstoned, in memory and on disk alike.
//! - A slot freed by the checkpoint of generation `g` is *held* while any registered reader
//!   (a read-only view, in any process: `store::readers`) still works on a generation
//!   older than `g`, in which the slot holds its old vector; it becomes *free* (reusable)
//!   once none does ([`Slots::release`]). The metadata stores held and free slots alike
//!   as free: both are free in every state from `g` on.
//! - An insert takes free slots, smallest first, then fresh ones past the high-water mark,
//!   a batch's rows in batch order: the neighbour heuristic takes the highest slot of
//!   equidistant candidates as the newest.
//!
//! The graph's live and routable bits are this state published for lock-free searches;
//! the metadata's FREE and TOMBSTONES tables are it made durable. Neither is decided
//! anywhere else.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::{SlotState, State};

/// Every slot's state, as of the last checkpoint plus every write logged since.
#[derive(Clone, Debug)]
pub(super) struct Slots {
    high_water: u32,
    live: u64,
    /// Free and reusable now.
    free: BTreeSet<u32>,
    /// Durably free, but not reusable yet: slot → the generation that freed it. Keyed by
    /// slot: every liveness check asks it; only a release walks it whole.
    held: BTreeMap<u32, u64>,
    tombstones: BTreeSet<u32>,
    /// Slots whose state changed since the last checkpoint: what its commit stores.
    changed: HashMap<u32, SlotState>,
}

impl Slots {
    /// The slots as of a checkpoint. Its free slots are held as freed by that checkpoint's
    /// generation (whatever older one freed them, no reader can be older than that and
    /// still have been unaffected): `release` frees them for reuse once no reader is older.
    pub(super) fn at_checkpoint(state: &State, free: Vec<u32>, tombstones: Vec<u32>) -> Slots {
        let held = free.into_iter().map(|s| (s, state.generation)).collect();
        Slots {
            high_water: state.high_water,
            live: state.live,
            free: BTreeSet::new(),
            held,
            tombstones: tombstones.into_iter().collect(),
            changed: HashMap::new(),
        }
    }

    /// One past the highest slot ever used.
    pub(super) fn high_water(&self) -> u32 {
        self.high_water
    }

    /// Number of live vectors.
    pub(super) fn live(&self) -> u64 {
        self.live
    }

    /// Free slots, reusable or held.
    pub(super) fn free_count(&self) -> usize {
        self.free.len() + self.held.len()
    }

    /// Free slots held back from reuse for a reader's sake.
    pub(super) fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Tombstoned slots, ascending.
    pub(super) fn tombstones(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.tombstones.iter().copied()
    }

    /// Whether `slot` is free (reusable or held).
    pub(super) fn is_free(&self, slot: u32) -> bool {
        self.free.contains(&slot) || self.held.contains_key(&slot)
    }

    /// Whether `slot` is tombstoned.
    pub(super) fn is_tombstone(&self, slot: u32) -> bool {
        self.tombstones.contains(&slot)
    }

    /// Whether `slot` holds a live vector (below the high-water mark, neither free nor
    /// tombstoned).
    pub(super) fn is_live(&self, slot: u32) -> bool {
        slot < self.high_water && !self.is_tombstone(slot) && !self.is_free(slot)
    }

    /// Slots whose state changed since the last checkpoint.
    #[cfg(test)]
    pub(super) fn changed(&self) -> &HashMap<u32, SlotState> {
        &self.changed
    }

    /// The `n` slots the next insert would take: reusable ones first, then fresh ones.
    pub(super) fn plan(&self, n: usize) -> Vec<u32> {
        let reused = self.free.iter().copied().take(n);
        let fresh = (0..n.saturating_sub(self.free.len())).map(|i| self.high_water + i as u32);
        reused.chain(fresh).collect()
    }

    /// Whether a logged write may place a vector in `slot`: free (reusable, or held — a
    /// replayed record was written when the slot was reusable; held is only what this
    /// process assumed at open) or at/after the high-water mark.
    pub(super) fn can_take(&self, slot: u32) -> bool {
        slot >= self.high_water || self.is_free(slot)
    }

    /// Marks `slot` live (see `can_take`).
    pub(super) fn take(&mut self, slot: u32) -> Result<(), String> {
        if slot < self.high_water {
            if !self.free.remove(&slot) && self.held.remove(&slot).is_none() {
                return Err(format!("slot {slot} is taken"));
            }
        } else {
            // Slots skipped over (none in a log this code wrote) become free.
            self.free.extend(self.high_water..slot);
            self.high_water = slot + 1;
        }
        self.live += 1;
        self.changed.insert(slot, SlotState::Live);
        Ok(())
    }

    /// Tombstones the live `slot`.
    pub(super) fn tombstone(&mut self, slot: u32) {
        debug_assert!(self.is_live(slot));
        self.live -= 1;
        self.tombstones.insert(slot);
        self.changed.insert(slot, SlotState::Tombstone);
    }

    /// The slot changes a checkpoint commits when it frees `freeing` (tombstones it has
    /// relinked the graph around): nothing changes here until the commit has succeeded.
    pub(super) fn changes_freeing(&self, freeing: &[u32]) -> HashMap<u32, SlotState> {
        let mut changes = self.changed.clone();
        for &slot in freeing {
            debug_assert!(self.tombstones.contains(&slot));
            changes.insert(slot, SlotState::Free);
        }
        changes
    }

    /// Records that the checkpoint of `generation`, which freed `freed`, is durable: the
    /// changes it committed are no longer pending, and the freed slots are held until
    /// `release` finds no reader older than `generation`.
    pub(super) fn committed(&mut self, freed: &[u32], generation: u64) {
        for slot in freed {
            self.tombstones.remove(slot);
        }
        if !freed.is_empty() {
            self.held.extend(freed.iter().map(|&s| (s, generation)));
        }
        self.changed.clear();
    }

    /// Frees for reuse every held slot that no reader can still see in use: those freed
    /// at or before `oldest_reader` (the oldest generation a registered reader works on;
    /// `None`: no reader).
    pub(super) fn release(&mut self, oldest_reader: Option<u64>) {
        // A reader of generation `g` sees in use only what a later checkpoint freed.
        let seen = |freed_at: u64| oldest_reader.is_none_or(|oldest| freed_at <= oldest);
        let free = &mut self.free;
        self.held.retain(|&slot, &mut freed_at| {
            let release = seen(freed_at);
            if release {
                free.insert(slot);
            }
            !release
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(high_water: u32, free: &[u32], tombstones: &[u32], generation: u64) -> Slots {
        let state = State {
            high_water,
            live: (high_water as usize - free.len() - tombstones.len()) as u64,
            generation,
            ..State::default()
        };
        let mut s = Slots::at_checkpoint(&state, free.to_vec(), tombstones.to_vec());
        s.release(None);
        s
    }

    #[test]
    fn free_slots_are_reused_smallest_first_then_fresh_ones() {
        let s = slots(10, &[7, 3], &[], 1);
        assert_eq!(s.plan(1), [3]);
        assert_eq!(s.plan(4), [3, 7, 10, 11]);
    }

    #[test]
    fn taking_slots_tracks_the_high_water_mark() {
        let mut s = slots(4, &[1], &[], 1);
        assert!(s.take(2).is_err(), "slot 2 is live");
        s.take(1).unwrap();
        assert_eq!(s.free_count(), 0);
        // A slot past the mark moves it; the slots skipped over become free.
        s.take(6).unwrap();
        assert_eq!(s.high_water(), 7);
        assert_eq!(s.plan(2), [4, 5]);
        assert_eq!(s.changed().get(&6), Some(&SlotState::Live));
        assert_eq!(s.live(), 5);
    }

    #[test]
    fn a_slot_is_free_only_once_its_checkpoint_committed() {
        let mut s = slots(4, &[], &[], 1);
        s.tombstone(2);
        let changes = s.changes_freeing(&[2]);
        assert_eq!(changes.get(&2), Some(&SlotState::Free));
        // Before `committed` (the commit failed, say) the slot stays tombstoned.
        assert!(s.is_tombstone(2));
        assert_eq!(s.plan(1), [4]);
        s.committed(&[2], 5);
        assert!(!s.is_tombstone(2) && s.is_free(2) && !s.is_live(2));
        assert!(s.changed().is_empty());
        // Held while a reader works on generation 4, which still sees the slot in use.
        s.release(Some(4));
        assert_eq!(s.plan(1), [4]);
        assert_eq!(s.held_count(), 1);
        s.release(Some(5));
        assert_eq!(s.plan(1), [2]);
        assert_eq!(s.held_count(), 0);
    }

    #[test]
    fn an_open_holds_its_free_slots_for_older_readers_but_replay_may_take_them() {
        let state = State {
            high_water: 3,
            live: 2,
            generation: 9,
            ..State::default()
        };
        let mut s = Slots::at_checkpoint(&state, vec![1], Vec::new());
        s.release(Some(8));
        assert_eq!(
            s.plan(1),
            [3],
            "held: a reader of generation 8 may see slot 1"
        );
        assert!(
            s.can_take(1),
            "a logged write was placed when it was reusable"
        );
        s.take(1).unwrap();
        assert_eq!(s.free_count(), 0);
        assert!(s.is_live(1));
    }

    /// Every order of `a` steps of one party and `b` of another (true: the first's turn).
    fn interleavings(a: usize, b: usize) -> Vec<Vec<bool>> {
        if a == 0 || b == 0 {
            return vec![[vec![true; a], vec![false; b]].concat()];
        }
        let mut all = Vec::new();
        for (first, rest) in [
            (true, interleavings(a - 1, b)),
            (false, interleavings(a, b - 1)),
        ] {
            all.extend(rest.into_iter().map(|r| [vec![first], r].concat()));
        }
        all
    }

    /// The reader/writer protocol of slot reuse, every interleaving of its steps, on the
    /// real allocator and reader table: a view that registered, read the committed
    /// generation and set it, then reads slot 1, must find the owner its generation says —
    /// whatever the writer (tombstone, commit the checkpoint freeing it, release by the
    /// oldest reader, reuse) did in between.
    #[test]
    fn no_interleaving_lets_a_view_see_a_reused_slot() {
        use crate::store::{ReaderTable, Registration};
        let schedules = interleavings(4, 4);
        assert_eq!(schedules.len(), 70);
        for schedule in schedules {
            let dir = tempfile::tempdir().unwrap();
            let table = ReaderTable::open(dir.path()).unwrap();
            let mut slots = slots(3, &[], &[], 1);
            // Generation 1 commits slot 1 to owner "A"; the writer then frees it.
            let (mut committed, mut content) = (1u64, 'A');
            let (mut w, mut r) = (0, 0);
            let mut reg = None;
            let mut view: Option<u64> = None;
            for reader_turn in &schedule {
                if *reader_turn {
                    match r {
                        0 => reg = Registration::register(dir.path()).unwrap(),
                        1 => view = Some(committed),
                        2 => reg.as_ref().unwrap().set(view.unwrap()).unwrap(),
                        _ => {
                            // In generation 1 the slot is live and A's.
                            if view == Some(1) {
                                assert_eq!(content, 'A', "schedule {schedule:?}");
                            }
                        }
                    }
                    r += 1;
                } else {
                    match w {
                        0 => slots.tombstone(1),
                        1 => {
                            slots.committed(&[1], 2);
                            committed = 2;
                        }
                        2 => slots.release(table.oldest().unwrap()),
                        _ => {
                            let slot = slots.plan(1)[0];
                            slots.take(slot).unwrap();
                            if slot == 1 {
                                content = 'B';
                            }
                        }
                    }
                    w += 1;
                }
            }
        }
    }
}
