//! The seeded crash-test workload shared by the kill and power-loss tests: a stream of
//! valid operations whose expected outcome (the model) a parent can regenerate exactly.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use hnswdb::{Index, Result};

/// One operation of a crash-test workload.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkOp {
    /// Insert a batch of new ids.
    Insert(Vec<(u64, Vec<f32>)>),
    /// Replace the vector of a live id.
    Upsert(u64, Vec<f32>),
    /// Delete live ids.
    Delete(Vec<u64>),
    /// Write a checkpoint (consolidating deletes).
    Checkpoint,
}

/// The state a workload prefix should leave: id → vector.
pub type Model = BTreeMap<u64, Vec<f32>>;

/// A seeded stream of valid operations (it tracks which ids are live), so that a crash
/// test's parent can regenerate exactly what its child ran.
pub struct Workload {
    rng: StdRng,
    dim: usize,
    next_id: u64,
    model: Model,
}

impl Workload {
    /// A workload of `dim`-dimensional vectors.
    pub fn new(seed: u64, dim: usize) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            dim,
            next_id: 0,
            model: Model::new(),
        }
    }

    /// The state after every operation generated so far.
    pub fn model(&self) -> &Model {
        &self.model
    }

    fn vector(&mut self) -> Vec<f32> {
        // A few coarse clusters, so that search quality is measurable.
        let centre = self.rng.random_range(0..4) as f32;
        (0..self.dim)
            .map(|_| centre + self.rng.random_range(-0.5f32..0.5))
            .collect()
    }

    /// The next operation (applied to the model).
    pub fn next_op(&mut self) -> WorkOp {
        let live: Vec<u64> = self.model.keys().copied().collect();
        let roll = self.rng.random_range(0..100);
        let op = if live.len() < 20 || roll < 55 {
            let n = self.rng.random_range(1..=8);
            let items: Vec<(u64, Vec<f32>)> = (0..n)
                .map(|_| {
                    self.next_id += 1;
                    (self.next_id, self.vector())
                })
                .collect();
            WorkOp::Insert(items)
        } else if roll < 70 {
            let id = live[self.rng.random_range(0..live.len())];
            WorkOp::Upsert(id, self.vector())
        } else if roll < 97 {
            let n = self.rng.random_range(1..=3).min(live.len());
            let mut ids = Vec::new();
            while ids.len() < n {
                let id = live[self.rng.random_range(0..live.len())];
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            WorkOp::Delete(ids)
        } else {
            WorkOp::Checkpoint
        };
        match &op {
            WorkOp::Insert(items) => self.model.extend(items.iter().cloned()),
            WorkOp::Upsert(id, v) => {
                self.model.insert(*id, v.clone());
            }
            WorkOp::Delete(ids) => ids.iter().for_each(|id| {
                self.model.remove(id);
            }),
            WorkOp::Checkpoint => {}
        }
        op
    }
}

/// Applies a workload operation to an index.
pub fn apply(index: &Index, op: &WorkOp) -> Result<()> {
    match op {
        WorkOp::Insert(items) => {
            let ids: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
            let flat: Vec<f32> = items.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            index.insert_batch(&ids, &flat)
        }
        WorkOp::Upsert(id, v) => index.upsert(*id, v),
        WorkOp::Delete(ids) => index.delete_batch(ids),
        WorkOp::Checkpoint => index.checkpoint(),
    }
}

/// The index's whole state as id → stored vector.
pub fn snapshot(index: &Index) -> Result<Model> {
    index
        .ids()?
        .into_iter()
        .map(|id| Ok((id, index.get(id)?)))
        .collect()
}
