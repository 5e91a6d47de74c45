//! SQ8: 8-bit scalar quantisation of vectors, and queries prepared against it.

use super::{ByteDot, ByteKernel, CodeKernel, Kernels, Metric};

/// Scalar quantisation to 8 bits per component (SQ8): component `i` is stored as a code
/// `c` in 0..=255 with `x ≈ offset_i + scale_i · c`, the range of each component learnt
/// from the data. A code vector is a quarter of the bytes of the f32 one, which is what a
/// graph walk is bound by; exact f32 distances re-rank the walk's answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sq8 {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

/// One value in this many, at each end of a component's range, is left out of the range
/// SQ8 learns (and clamped when encoded). A few outliers set a min-max range: one vector
/// of 1,000s among 10,000 N(0, 1) rows left every other component in one or two of the
/// 256 steps, and recall@10 at ef 64 fell from 0.998 to 0.073.
const SQ8_TRIM: usize = 1000;

/// How far past the learnt ranges (in norms of one step per component) clamping may move
/// a vector that still fits (`Sq8::fits`). With 1 or 2, over 1% of 20,000 clustered 64-d
/// vectors (`tests/core.rs`) misfit by the tails the trim left out, codes trained on
/// them, and a checkpoint would retrain every time; a drift of a few steps clamps a few
/// vectors alike (points on a line: 97% find themselves at ef 64 until the next
/// retraining, against 61% with no misfits at all).
const MISFIT_STEPS: f32 = 4.0;

/// Sample rows `Sq8::resolves` compares with each other (their nearest neighbours among
/// so few lie further than in the whole data, which errs towards keeping codes).
const RESOLVE_ROWS: usize = 256;

/// Above this ratio of encoding error to nearest-neighbour distance, at the
/// `RESOLVE_QUANTILE`-th percentile of the sample's rows, SQ8 codes do not resolve the
/// data (`Sq8::resolves`). Medians measured on 5,000-row sets (M 16, recall@10 at ef 64
/// on codes, and exact): real MiniLM embeddings 0.007-0.008 (0.998, 0.998), Gaussian
/// 8-128-d at most 0.012, 50 clusters 0.04-0.06, 1-d Gaussian 0.93 (0.997 against 1.0:
/// declined); Cauchy 1-2-d 1.9-18 (0.24-0.53 against 1.0) and two clusters 1,000 apart at
/// 2-32-d 1.1-9.5 (0.07-0.47 against 1.0).
const RESOLVE_RATIO: f32 = 0.5;

/// The percentile of rows `RESOLVE_RATIO` bounds. The median let 8-d Cauchy data through
/// (median 0.36, 90th percentile 0.71): the many rows with a large component set its
/// ranges and its median, and the dense core fell into a step or two, so that queries
/// from the core (N(0, 1)) found their ten nearest at recall 0.45 at ef 16 and 0.82 at
/// ef 64 (hnswlib 0.998 and 1.0). MiniLM embeddings (the Debian set): 0.024 at the 90th.
const RESOLVE_QUANTILE: usize = 90;

/// Distinct vectors one code may stand for (`Sq8::resolves`): a walk's exact re-rank sees
/// across a cell of fewer than its beam. Points on a line in 8-d (10,000, each code 39 of
/// them) stay on codes; a tight cluster of 2,000 does not.
const RESOLVE_CELL: u64 = 64;

impl Sq8 {
    /// Learns each component's range from `rows`: from min to max, less the
    /// `1 / SQ8_TRIM` most extreme values at each end (none below `SQ8_TRIM` rows).
    pub fn train<'a>(dim: usize, rows: impl IntoIterator<Item = &'a [f32]>) -> Sq8 {
        let rows: Vec<&[f32]> = rows.into_iter().collect();
        let trim = rows.len() / SQ8_TRIM;
        let mut column = Vec::with_capacity(rows.len());
        let (offset, scale) = (0..dim)
            .map(|i| {
                column.clear();
                column.extend(rows.iter().map(|r| r[i]));
                match trimmed_range(&mut column, trim) {
                    Some((l, h)) if h > l => (l, (h - l) / 255.0),
                    // A constant (or unseen) component: every code decodes to `l`.
                    Some((l, _)) => (l, 0.0),
                    None => (0.0, 0.0),
                }
            })
            .unzip();
        Sq8 { offset, scale }
    }

    /// Whether codes of these ranges tell `rows` (a sample of the data they were trained
    /// on) from their nearest neighbours: the `RESOLVE_QUANTILE`-th percentile, over rows
    /// with a distinct nearest neighbour among `RESOLVE_ROWS` spread over `rows`, of the
    /// distance encoding moves a row against the distance to that neighbour, is under
    /// `RESOLVE_RATIO`. Ranges that
    /// heavy tails or far-apart clusters stretch put whole neighbourhoods in one or two
    /// steps; a walk on such codes cannot tell their vectors apart (1-d Cauchy data:
    /// 42% of vectors did not find themselves at ef 64). Nor do they when one code stands
    /// for more than `RESOLVE_CELL` distinct vectors (estimated for `live` vectors from
    /// the sample `rows`): a tight cluster among wider data, however few of the data it
    /// is, is a plateau no beam sees across (2,000 rows of σ 1e-3 among 2,000 of N(0, 1):
    /// recall@10 0.09 at ef 64).
    pub fn resolves(&self, rows: &[&[f32]], live: u64) -> bool {
        self.resolves_neighbours(rows) && self.largest_cell(rows, live) < RESOLVE_CELL
    }

    /// The neighbour test of `resolves`.
    fn resolves_neighbours(&self, rows: &[&[f32]]) -> bool {
        let step = rows.len().div_ceil(RESOLVE_ROWS).max(1);
        let rows: Vec<&[f32]> = rows.iter().step_by(step).copied().collect();
        let mut code = vec![0u8; self.dim()];
        let mut ratios: Vec<f32> = Vec::with_capacity(rows.len());
        for (i, a) in rows.iter().enumerate() {
            let nearest = (rows.iter().enumerate())
                .filter(|&(j, _)| j != i)
                .map(|(_, b)| super::l2sq_scalar(a, b))
                .filter(|&d| d > 0.0)
                .fold(f32::INFINITY, f32::min);
            if nearest.is_finite() {
                self.encode(a, &mut code);
                let moved: f32 = (a.iter().zip(&code).enumerate())
                    .map(|(j, (&x, &c))| x - (self.offset[j] + self.scale[j] * c as f32))
                    .map(|e| e * e)
                    .sum();
                ratios.push((moved / nearest).sqrt());
            }
        }
        if ratios.is_empty() {
            return true;
        }
        let at = ratios.len() * RESOLVE_QUANTILE / 100;
        *ratios.select_nth_unstable_by(at, f32::total_cmp).1 < RESOLVE_RATIO
    }

    /// The distinct vectors of `rows` (a sample of `live`) that share the most shared code,
    /// scaled to `live`; 1 if no two share one: the sample then shows no cell wider than
    /// a vector (scaled regardless, every index past 64 times the sample, 6.4 million
    /// vectors, was refused codes whatever its data).
    fn largest_cell(&self, rows: &[&[f32]], live: u64) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = |bytes: &[u8]| BuildHasherDefault::<DefaultHasher>::default().hash_one(bytes);
        let mut code = vec![0u8; self.dim()];
        let mut pairs: Vec<(u64, u64)> = (rows.iter())
            .map(|r| {
                self.encode(r, &mut code);
                (hash(&code), hash(bytemuck::cast_slice(r)))
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let largest = (pairs.chunk_by(|a, b| a.0 == b.0))
            .map(|cell| cell.len() as u64)
            .max()
            .unwrap_or(0);
        match largest {
            0 | 1 => largest,
            _ => largest * live.max(1) / (rows.len().max(1) as u64),
        }
    }

    /// A quantiser from stored parameters (as returned by `offset` and `scale`).
    pub fn from_parts(offset: Vec<f32>, scale: Vec<f32>) -> Sq8 {
        debug_assert_eq!(offset.len(), scale.len());
        Sq8 { offset, scale }
    }

    /// Per-component offsets.
    pub fn offset(&self) -> &[f32] {
        &self.offset
    }

    /// Per-component scales.
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.offset.len()
    }

    /// Encodes `v` into `out`; components outside the learnt range are clamped.
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        for (((o, &x), &off), &sc) in out.iter_mut().zip(v).zip(&self.offset).zip(&self.scale) {
            *o = if sc > 0.0 { code_of((x - off) / sc) } else { 0 };
        }
    }

    /// Whether `v` lies about within the learnt ranges: clamping moves it at most
    /// `MISFIT_STEPS` times the norm of one step per component (a component just past a
    /// trimmed end fits; a vector beyond the range that every newer one shares, as when
    /// the data drifts after training, does not). Codes of vectors that do not fit are
    /// blurred together, so a walk on them cannot tell those vectors apart.
    pub fn fits(&self, v: &[f32]) -> bool {
        let (mut moved, mut steps) = (0f32, 0f32);
        for ((&x, &off), &sc) in v.iter().zip(&self.offset).zip(&self.scale) {
            let clamped = x.clamp(off, off + 255.0 * sc);
            moved += (x - clamped) * (x - clamped);
            steps += sc * sc;
        }
        moved <= MISFIT_STEPS * MISFIT_STEPS * steps
    }

    /// Prepares `q` for comparison against codes under `metric` (`q` already normalised
    /// for cosine), using `kernels`.
    pub fn query(&self, metric: Metric, kernels: Kernels, q: &[f32]) -> Sq8Query {
        match metric {
            // (q − (o + s·c))² = ((q − o) − s·c)²
            Metric::L2 => Sq8Query {
                integer: None,
                a: q.iter().zip(&self.offset).map(|(q, o)| q - o).collect(),
                b: self.scale.clone(),
                constant: 0.0,
                kernel: kernels.l2sq_u8,
                one_minus: false,
            },
            // q·(o + s·c) = q·o + (q∘s)·c
            Metric::InnerProduct | Metric::Cosine => {
                let a: Vec<f32> = q.iter().zip(&self.scale).map(|(q, s)| q * s).collect();
                Sq8Query {
                    integer: kernels.dot_u8_i8.map(|bytes| IntegerQuery::new(&a, bytes)),
                    a,
                    b: Vec::new(),
                    // The kernel, not a scalar loop: that is one dependent add per
                    // component, and this runs once per query.
                    constant: (kernels.dot)(q, &self.offset),
                    kernel: kernels.dot_u8,
                    one_minus: true,
                }
            }
        }
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` (rounding half away from zero), bit for bit, for
/// any `v` that is not NaN, without `f32::round`: that is a call to `roundf` per
/// component on x86-64 without SSE4.1, and every insert encodes its vector (a codes
/// file, which views and `verify` compare with fresh encodings, must not change).
#[inline]
pub(super) fn code_of(v: f32) -> u8 {
    if v.is_nan() || v <= 0.0 {
        return 0;
    }
    let v = v.min(256.0);
    // Truncation, and the fraction it drops, are exact for values this small.
    let whole = v as u32;
    let rounded = whole + u32::from(v - whole as f32 >= 0.5);
    rounded.min(255) as u8
}

/// The range of `values` (reordered) without its `trim` lowest and `trim` highest; the
/// whole range where trimming leaves a single value (a sparse component, nonzero in
/// fewer rows than the trim, keeps its range instead of collapsing to zero). None if
/// empty.
fn trimmed_range(values: &mut [f32], trim: usize) -> Option<(f32, f32)> {
    let (min, max) = values.iter().fold(None, |r: Option<(f32, f32)>, &x| {
        Some(r.map_or((x, x), |(l, h)| (l.min(x), h.max(x))))
    })?;
    if trim == 0 || 2 * trim >= values.len() {
        return Some((min, max));
    }
    let last = values.len() - 1 - trim;
    let lo = *values.select_nth_unstable_by(trim, f32::total_cmp).1;
    let hi = *values.select_nth_unstable_by(last, f32::total_cmp).1;
    Some(if hi > lo { (lo, hi) } else { (min, max) })
}

/// A query prepared against an [`Sq8`] quantiser: its distance to a code vector
/// approximates the metric's distance to the vector the codes stand for.
#[derive(Clone, Debug)]
pub struct Sq8Query {
    /// The dot product's `a` rounded to integers, where the kernels have an integer
    /// kernel: used instead of `kernel`.
    integer: Option<IntegerQuery>,
    a: Vec<f32>,
    b: Vec<f32>,
    constant: f32,
    kernel: CodeKernel,
    one_minus: bool,
}

impl Sq8Query {
    /// Approximate distance to the vector encoded by `codes`.
    #[inline(always)]
    pub fn eval(&self, codes: &[u8]) -> f32 {
        let sum = match &self.integer {
            Some(i) => i.step * (i.kernel)(&i.parts, codes),
            None => (self.kernel)(&self.a, &self.b, codes),
        };
        let k = self.constant + sum;
        if self.one_minus { 1.0 - k } else { k }
    }
}

/// A dot product's query `a` rounded to integers for a [`ByteDot`]: `a_i ≈ step ·
/// (FINE·h_i + l_i)`, `h` and `l` within `±BYTE_PART`. The rounding moves each component
/// by about `step / 2` at most, `max |a_i| / (2 · FINE · BYTE_PART)`: on 384-d embeddings about
/// a twentieth of what the codes' own rounding moves the sum, so walks rank as on f32.
#[derive(Clone, Debug)]
struct IntegerQuery {
    /// `h` then `l`, each as long as `a`.
    parts: Vec<i8>,
    step: f32,
    kernel: ByteKernel,
}

impl IntegerQuery {
    fn new(a: &[f32], bytes: ByteDot) -> IntegerQuery {
        let mut parts = vec![0i8; 2 * a.len()];
        let step = (bytes.round)(a, &mut parts);
        IntegerQuery {
            parts,
            step,
            kernel: bytes.dot,
        }
    }
}
