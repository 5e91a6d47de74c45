//! The seeded crash-test workload shared by the kill and power-loss tests: a stream of
//! valid operations whose expected outcome (the model) a parent can regenerate exactly.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use hnswdb::serde_json::{Value, json};
use hnswdb::{Index, Result};

/// One operation of a crash-test workload.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkOp {
    /// Insert a batch of new ids (some with payloads).
    Insert(Vec<(u64, Vec<f32>, Option<Value>)>),
    /// Replace the vector of a live id.
    Upsert(u64, Vec<f32>),
    /// Delete live ids.
    Delete(Vec<u64>),
    /// Set (or remove) the payload of a live id.
    SetPayload(u64, Option<Value>),
    /// Write a checkpoint (consolidating deletes).
    Checkpoint,
}

/// The state a workload prefix should leave: id → (vector, payload).
pub type Model = BTreeMap<u64, (Vec<f32>, Option<Value>)>;

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
        // On a grid of 1/512: exact in f16 as in f32 (|x| < 4), so that a recovered f16
        // index must equal the model bit for bit too.
        (0..self.dim)
            .map(|_| centre + self.rng.random_range(-256i32..256) as f32 / 512.0)
            .collect()
    }

    /// The next operation (applied to the model).
    pub fn next_op(&mut self) -> WorkOp {
        let live: Vec<u64> = self.model.keys().copied().collect();
        let roll = self.rng.random_range(0..100);
        let op = if live.len() < 20 || roll < 55 {
            let n = self.rng.random_range(1..=8);
            let with_payloads = self.rng.random_bool(0.5);
            let items: Vec<(u64, Vec<f32>, Option<Value>)> = (0..n)
                .map(|_| {
                    self.next_id += 1;
                    let payload = with_payloads.then(|| json!({"g": self.next_id % 7}));
                    (self.next_id, self.vector(), payload)
                })
                .collect();
            WorkOp::Insert(items)
        } else if roll < 65 {
            let id = live[self.rng.random_range(0..live.len())];
            WorkOp::Upsert(id, self.vector())
        } else if roll < 72 {
            let id = live[self.rng.random_range(0..live.len())];
            let g = self.rng.random_range(0..9);
            WorkOp::SetPayload(id, (g < 8).then(|| json!({"g": g, "set": true})))
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
            WorkOp::Insert(items) => self
                .model
                .extend(items.iter().map(|(id, v, p)| (*id, (v.clone(), p.clone())))),
            WorkOp::Upsert(id, v) => {
                // A replaced vector keeps its payload.
                self.model.get_mut(id).expect("live").0 = v.clone();
            }
            WorkOp::SetPayload(id, p) => {
                self.model.get_mut(id).expect("live").1 = p.clone();
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
            let ids: Vec<u64> = items.iter().map(|(id, _, _)| *id).collect();
            let flat: Vec<f32> = items
                .iter()
                .flat_map(|(_, v, _)| v.iter().copied())
                .collect();
            if items.iter().any(|(_, _, p)| p.is_some()) {
                let payloads: Vec<Value> = items
                    .iter()
                    .map(|(_, _, p)| p.clone().unwrap_or(Value::Null))
                    .collect();
                index.insert_batch_with_payloads(&ids, &flat, &payloads, index.threads())
            } else {
                index.insert_batch(&ids, &flat)
            }
        }
        WorkOp::Upsert(id, v) => index.upsert(*id, v),
        WorkOp::SetPayload(id, p) => index.set_payload(*id, p.as_ref().unwrap_or(&Value::Null)),
        WorkOp::Delete(ids) => index.delete_batch(ids),
        WorkOp::Checkpoint => index.checkpoint(),
    }
}

/// The index's whole state as id → (stored vector, payload).
pub fn snapshot(index: &Index) -> Result<Model> {
    index
        .ids()?
        .into_iter()
        .map(|id| Ok((id, (index.get(id)?, index.get_payload(id)?))))
        .collect()
}
