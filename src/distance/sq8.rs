//! SQ8: 8-bit scalar quantisation of vectors, and queries prepared against it.

use super::{CodeKernel, Kernels, Metric, dot_scalar};

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
            *o = if sc > 0.0 {
                ((x - off) / sc).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
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
                a: q.iter().zip(&self.offset).map(|(q, o)| q - o).collect(),
                b: self.scale.clone(),
                constant: 0.0,
                kernel: kernels.l2sq_u8,
                one_minus: false,
            },
            // q·(o + s·c) = q·o + (q∘s)·c
            Metric::InnerProduct | Metric::Cosine => Sq8Query {
                a: q.iter().zip(&self.scale).map(|(q, s)| q * s).collect(),
                b: Vec::new(),
                constant: dot_scalar(q, &self.offset),
                kernel: kernels.dot_u8,
                one_minus: true,
            },
        }
    }
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
        let k = self.constant + (self.kernel)(&self.a, &self.b, codes);
        if self.one_minus { 1.0 - k } else { k }
    }
}
