//! Searches with options: payload filters answered by a planner, paging, a distance cap;
//! range search; and `tune`, which picks the smallest ef that reaches a target recall.

use rand::seq::index::sample;

use super::{Hit, Index, Neighbour};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::graph::{Cand, Graph, WalkBudget};
use crate::limits::{MAX_K, check_search};

/// A search's options beyond the query vector: `Query::new(k)` then the builders.
///
/// ```
/// # use hnswdb::{Index, IndexOptions, Metric, Filter, FieldSpec, FieldKind};
/// # use serde_json::json;
/// # let dir = tempfile::tempdir()?;
/// let options = IndexOptions::new(2, Metric::L2).field(FieldSpec::new("lang", FieldKind::Keyword));
/// let index = Index::create(dir.path(), &options)?;
/// index.insert_with_payload(1, &[0.0, 0.0], &json!({"lang": "en"}))?;
/// index.insert_with_payload(2, &[0.1, 0.0], &json!({"lang": "de"}))?;
/// let english = Filter::eq("lang", "en");
/// let hits = index.search_with(&[0.1, 0.0], &hnswdb::Query::new(5).filter(&english))?;
/// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Query<'a> {
    k: usize,
    ef: Option<usize>,
    filter: Option<&'a Filter>,
    offset: usize,
    max_distance: Option<f32>,
    plan: Option<Plan>,
    include_payload: bool,
    include_vector: bool,
}

impl<'a> Query<'a> {
    /// The `k` nearest (after `offset`), with the index's default ef and no filter.
    pub fn new(k: usize) -> Query<'a> {
        Query {
            k,
            ef: None,
            filter: None,
            offset: 0,
            max_distance: None,
            plan: None,
            include_payload: false,
            include_vector: false,
        }
    }

    /// `search_hits` returns each hit's payload too.
    pub fn include_payload(mut self, yes: bool) -> Self {
        self.include_payload = yes;
        self
    }

    /// `search_hits` returns each hit's stored vector too (unit length under cosine).
    pub fn include_vector(mut self, yes: bool) -> Self {
        self.include_vector = yes;
        self
    }

    /// Uses this plan for a filtered search instead of the planner's choice (for
    /// benchmarks and tests; a walk that finds too few still falls back to a scan).
    pub fn force_plan(mut self, plan: Plan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Beam width (at least `offset + k` is used).
    pub fn ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Only vectors whose payload `filter` admits: on indexed fields by their index, on
    /// any other payload key by a scan of every live payload (see `Index::explain`).
    pub fn filter(mut self, filter: &'a Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Skips the `offset` nearest: page `p` of size `k` is `offset(p * k)`.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Only answers at most this far from the query.
    pub fn max_distance(mut self, d: f32) -> Self {
        self.max_distance = Some(d);
        self
    }
}

/// How a search is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No filter: the graph walk.
    Unfiltered,
    /// The graph walk through every node, only admitted ones kept as answers, given up
    /// for a scan once it grows, or is projected to grow, costlier than the scan (the
    /// filter's vectors lie away from the query).
    Walk,
    /// A scan of the filter's vectors (on codes, then exact re-rank): few match.
    Scan,
}

/// What the planner decided for a query, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explain {
    /// The plan.
    pub plan: Plan,
    /// Live vectors the filter admits (all live vectors without one).
    pub matching: u64,
    /// Live vectors.
    pub live: u64,
    /// The fields the filter reads that no field index holds, sorted: when there are
    /// any, the filter is evaluated by a scan of every live payload (its answer kept
    /// until the next write). `create_field_index` makes such a field fast.
    pub unindexed: Vec<String>,
}

/// The planner scans when `matching² / live` is below this, else walks. The scan costs
/// one code per admitted vector, `s * live` for a filter admitting a fraction `s`; a walk
/// that keeps only admitted answers must reach more nodes the smaller `s` is (Debian set,
/// ef 10, distances per query: 335 unfiltered, 481 at 50%, 1,480 at 10%, 2,245 at 6%,
/// 3,474 at 3.5%, about `s^-0.65`). Taking the walk's cost as `1/s` makes the rule "scan
/// while `s * matching` is small", one constant to measure: on the Debian set
/// (`benches/compare/filters.py --plans`, docs/filters.md) the scan ran about twice as fast
/// as the walk at 6% (3,540 matching) and half as fast at 10% (5,952); the crossover,
/// about 7.7% (4,560 matching), puts it at 350. Since the walk's cost grows slower than
/// `1/s`, on larger sets the rule leans to the scan (at 1 M vectors it scans below 1.9%).
const SCAN_BELOW: f64 = 350.0;

/// Distances a walk may compute per admitted vector before it is abandoned for a scan:
/// the scan scores each admitted vector once, in slot order, its codes loaded ahead; a
/// walk's distance costs more (random access, lists to read). On the Debian set, one
/// session, a walk's distance cost 1.8-3x a scanned vector (10% random, ef 10: the walk
/// computed 1,480 distances at 2,455 QPS, the scan 5,952 vectors at 1,192 QPS; 6%: 2,245
/// at 1,522 against 3,540 at 2,777), so the walk gets half a distance per vector.
const WALK_BUDGET_PER_MATCH: f64 = 0.5;

/// The plan for a filter admitting `matching` of `live` vectors.
fn plan(matching: u64, live: u64) -> Plan {
    if (matching as f64).powi(2) < SCAN_BELOW * live as f64 {
        Plan::Scan
    } else {
        Plan::Walk
    }
}

/// What `tune` found.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// The smallest ef that reached the target on the sample (now the index's default).
    pub ef: usize,
    /// Mean recall@k at that ef on the sample.
    pub recall: f64,
    /// Whether the target was reached (else `ef` is the largest tried).
    pub reached: bool,
    /// Queries sampled (stored vectors, each excluded from its own answers).
    pub sample: usize,
    /// Every (ef, recall) measured.
    pub curve: Vec<(usize, f64)>,
}

/// The largest ef `tune` tries.
const TUNE_MAX_EF: usize = 4096;

impl Index {
    /// A search with options: a payload filter (planned: see [`Index::explain`]),
    /// paging, a distance cap. Nearest first. `offset + k` beyond `limits::MAX_K` or an
    /// ef beyond `limits::MAX_EF` is an `InvalidOption` (as for every search).
    pub fn search_with(&self, query: &[f32], q: &Query<'_>) -> Result<Vec<Neighbour>> {
        self.check_query(q)?;
        self.search_checked(query, q)
    }

    /// The sizes of `q` checked against `limits` (its ef, or the index's default), and its
    /// radius.
    fn check_query(&self, q: &Query<'_>) -> Result<()> {
        check_radius(q.max_distance)?;
        check_search(q.k, q.offset, q.ef.unwrap_or_else(|| self.ef()))
    }

    /// `search_with`, each hit with its payload and vector if `q` includes them, read
    /// under the same view as the search (no write comes between). Nearest first; fewer
    /// than k when fewer match.
    pub fn search_hits(&self, query: &[f32], q: &Query<'_>) -> Result<Vec<Hit>> {
        self.check_query(q)?;
        self.hits_checked(query, q)
    }

    /// `search_hits` for every row of `queries` on `threads` threads; answers in query
    /// order.
    pub fn search_hits_batch(
        &self,
        queries: &[f32],
        q: &Query<'_>,
        threads: usize,
    ) -> Result<Vec<Vec<Hit>>> {
        self.check_query(q)?;
        let rows = self.rows(queries)?;
        self.each_row(rows.len(), threads, |i| self.hits_checked(rows[i], q))
    }

    /// `search_hits` of a checked query.
    fn hits_checked(&self, query: &[f32], q: &Query<'_>) -> Result<Vec<Hit>> {
        self.follow()?;
        let v = self.prepare(query)?;
        let graph = self.graph.read();
        let found = self.search_locked(&graph, &v, q)?;
        if !q.include_payload && !q.include_vector {
            return Ok(found.into_iter().map(|n| Hit::of(n, None, None)).collect());
        }
        let p = self.ledger.lock();
        let meta = self.meta();
        found
            .into_iter()
            .map(|n| {
                let payload = if q.include_payload {
                    self.decoded(n.id, p.payload_of(&meta, n.id)?)?
                } else {
                    None
                };
                let vector = match q.include_vector {
                    true => {
                        let slot = p.slot_of(&meta, n.id)?.ok_or(Error::UnknownId(n.id))?;
                        Some(self.vector_at(&graph, n.id, slot)?)
                    }
                    false => None,
                };
                Ok(Hit::of(n, payload, vector))
            })
            .collect()
    }

    /// `search_with` of a query whose sizes are checked, or are the index's own
    /// (`search_within` asks for up to every live vector).
    fn search_checked(&self, query: &[f32], q: &Query<'_>) -> Result<Vec<Neighbour>> {
        self.follow()?;
        let v = self.prepare(query)?;
        let graph = self.graph.read();
        self.search_locked(&graph, &v, q)
    }

    /// `search_checked` of the prepared query `v` on `graph`, whose lock the caller
    /// holds.
    fn search_locked(&self, graph: &Graph, v: &[f32], q: &Query<'_>) -> Result<Vec<Neighbour>> {
        let want = q.offset + q.k;
        if q.k == 0 {
            return Ok(Vec::new());
        }
        let ef = q.ef.unwrap_or_else(|| self.ef()).max(want).max(1);
        self.searched(graph, || {
            let found = self.planned(graph, v, q, want, ef)?;
            Ok(found
                .into_iter()
                .skip(q.offset)
                .take(q.k)
                .filter(|c| q.max_distance.is_none_or(|d| c.d <= d))
                .collect())
        })
    }

    /// The `want` nearest answers to the prepared query `v` that `q`'s filter admits, by
    /// the plan `q` asks for or the planner picks.
    fn planned(
        &self,
        graph: &Graph,
        v: &[f32],
        q: &Query<'_>,
        want: usize,
        ef: usize,
    ) -> Result<Vec<Cand>> {
        Ok(match q.filter {
            None => graph.search(v, want, ef)?,
            Some(filter) => {
                // Evaluated under the graph's read lock, which every payload change and
                // delete needs exclusively: the bitmap holds for the whole walk.
                let admitted = self.admitted(filter)?;
                let matching = admitted.len();
                let live = self.len();
                let scan = || graph.scan_subset(v, want, ef, admitted.iter());
                match q.plan.unwrap_or_else(|| plan(matching, live)) {
                    Plan::Scan => scan(),
                    _ => {
                        let budget = q
                            .plan
                            .is_none()
                            .then(|| WalkBudget::new(matching, live, WALK_BUDGET_PER_MATCH));
                        match graph
                            .search_admitted(v, want, ef, budget, |n| admitted.contains(n))?
                        {
                            // Fewer than asked although enough match: the walk could not
                            // reach them; a scan finds every one.
                            Some(found) if (found.len() as u64) >= (want as u64).min(matching) => {
                                found
                            }
                            _ => scan(),
                        }
                    }
                }
            }
        })
    }

    /// `search_with` for every row of `queries` on `threads` threads; answers in query
    /// order.
    pub fn search_batch_with(
        &self,
        queries: &[f32],
        q: &Query<'_>,
        threads: usize,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.check_query(q)?;
        let rows = self.rows(queries)?;
        self.each_row(rows.len(), threads, |i| self.search_checked(rows[i], q))
    }

    /// The plan `search_with` would use for `q`'s filter, with the number of vectors it
    /// admits (exact: the field index counts them). A `Walk` still turns into a scan at
    /// run time when it grows costlier than one.
    pub fn explain(&self, q: &Query<'_>) -> Result<Explain> {
        self.check_query(q)?;
        let live = self.len();
        let Some(filter) = q.filter else {
            return Ok(Explain {
                plan: Plan::Unfiltered,
                matching: live,
                live,
                unindexed: Vec::new(),
            });
        };
        let matching = self.admitted(filter)?.len();
        Ok(Explain {
            plan: q.plan.unwrap_or_else(|| plan(matching, live)),
            matching,
            live,
            unindexed: filter.unindexed(&self.fields.read().specs),
        })
    }

    /// Every vector within `max_distance` of `query` (admitted by `filter`, if given),
    /// nearest first. Searches with a growing k until the farthest answer is beyond the
    /// radius; like any graph search it can miss a vector a scan would find.
    pub fn search_within(
        &self,
        query: &[f32],
        max_distance: f32,
        filter: Option<&Filter>,
    ) -> Result<Vec<Neighbour>> {
        check_radius(Some(max_distance))?;
        check_search(0, 0, self.ef())?;
        let live = self.len() as usize;
        let mut k = 64.min(live.max(1));
        loop {
            let mut q = Query::new(k).ef(k.max(self.ef()));
            if let Some(f) = filter {
                q = q.filter(f);
            }
            // k grows to the live count, past `MAX_K`: a radius, not the caller, sets it.
            let hits = self.search_checked(query, &q)?;
            let complete = hits.len() < k || hits.last().is_some_and(|h| h.distance > max_distance);
            if complete || k >= live {
                return Ok(hits
                    .into_iter()
                    .filter(|h| h.distance <= max_distance)
                    .collect());
            }
            k = (k * 2).min(live);
        }
    }

    /// Picks the smallest ef whose recall@k reaches `target` on a sample of stored
    /// vectors (each searched for, and left out of, its own answers) against exact
    /// search, and makes it the index's default. Costs `sample × len` distances for the
    /// exact answers; stored vectors are an estimate of real queries, usually a close one.
    pub fn tune(&self, target: f64, k: usize) -> Result<Tuning> {
        // Each sampled vector asks for k + 1 (itself is left out of its answers).
        if !(0.0..=1.0).contains(&target) || !(1..MAX_K).contains(&k) {
            return Err(Error::InvalidOption(format!(
                "tune needs a target recall in 0..=1 and k in 1..{MAX_K}"
            )));
        }
        let ids = self.ids()?;
        if ids.len() <= k {
            return Err(Error::InvalidOption(format!(
                "tune needs more than k = {k} vectors; the index holds {}",
                ids.len()
            )));
        }
        let n = 100.min(ids.len());
        let picked: Vec<u64> = sample(&mut rand::rng(), ids.len(), n)
            .into_iter()
            .map(|i| ids[i])
            .collect();
        let mut queries = Vec::with_capacity(n);
        let mut truth = Vec::with_capacity(n);
        for &id in &picked {
            let v = self.get(id)?;
            let exact: Vec<u64> = self
                .search_exact(&v, k + 1)?
                .into_iter()
                .map(|h| h.id)
                .filter(|&h| h != id)
                .take(k)
                .collect();
            queries.push((id, v));
            truth.push(exact);
        }
        let recall_at = |ef: usize| -> Result<f64> {
            let mut hit = 0usize;
            for ((id, v), exact) in queries.iter().zip(&truth) {
                let found = self.search_ef(v, k + 1, ef)?;
                hit += found
                    .iter()
                    .filter(|h| h.id != *id)
                    .take(k)
                    .filter(|h| exact.contains(&h.id))
                    .count();
            }
            Ok(hit as f64 / (k * queries.len()) as f64)
        };
        let mut curve = Vec::new();
        // Double until the target is reached, then bisect between the last two. Never
        // below k: a search's beam is at least k wide whatever its ef, so every ef under
        // k measures the same, and an easy index would bisect down to ef 1 and keep it
        // as the default for searches of fewer neighbours (k 1: recall 0.5).
        let (mut lo, mut hi) = (k, k.max(8));
        let mut best = None;
        loop {
            let r = recall_at(hi)?;
            curve.push((hi, r));
            if r >= target {
                best = Some((hi, r));
                break;
            }
            if hi >= TUNE_MAX_EF {
                break;
            }
            lo = hi;
            hi = (hi * 2).min(TUNE_MAX_EF);
        }
        let (ef, recall, reached) = match best {
            None => (hi, curve.last().map_or(0.0, |c| c.1), false),
            Some((mut ef, mut recall)) => {
                while ef - lo > 1 {
                    let mid = (lo + ef) / 2;
                    let r = recall_at(mid)?;
                    curve.push((mid, r));
                    if r >= target {
                        (ef, recall) = (mid, r);
                    } else {
                        lo = mid;
                    }
                }
                (ef, recall, true)
            }
        };
        curve.sort_by_key(|c| c.0);
        self.set_ef(ef);
        Ok(Tuning {
            ef,
            recall,
            reached,
            sample: n,
            curve,
        })
    }
}

/// A NaN radius admits nothing (`d <= NaN` is false): an error, not an empty answer.
fn check_radius(max_distance: Option<f32>) -> Result<()> {
    match max_distance {
        Some(d) if d.is_nan() => Err(Error::InvalidOption("max_distance is NaN".into())),
        _ => Ok(()),
    }
}
