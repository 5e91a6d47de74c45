//! RaBitQ (Gao & Long, SIGMOD 2024): one bit per dimension of a randomly rotated,
//! centred vector, plus two correction scalars, with an unbiased estimator of distances
//! and a bound on its error. At 384 dimensions a code is 72 bytes against SQ8's 384: the
//! routing tier of an index far larger than memory (its codes and layer-0 lists) stays
//! resident, and the bound tells which candidates an exact re-rank can skip.
//!
//! A code is `padded / 8` bytes of sign bits (bit `t` of byte `j`: coordinate `8 j + t`
//! of the rotated unit residual is positive), then `norm: f32` (‖x − c‖) and `dot: f32`
//! (⟨x̄, o⟩, the inner product of the quantised and the true rotated unit residual, in
//! (0, 1]), little-endian. `padded` is the dimension rounded up to a power of two (at
//! least 64); the rotation is three rounds of random sign flips and a normalised
//! Walsh-Hadamard transform, seeded, so that only the seed and the centroid are stored.
//!
//! Extended RaBitQ (Gao et al., SIGMOD 2025, arXiv 2409.09913) spends `B` = 2..8 bits per
//! coordinate: the code is the point `(u − c) / ‖u − c‖`, `u` in `{0 .. 2^B − 1}^D` and
//! `c = (2^B − 1) / 2`, of the scaled grid nearest in angle to the rotated unit residual
//! `o`, so that `⟨x̄, o⟩` is near 1 (0.8 at one bit, above 0.99 at eight) and the same
//! estimator `⟨x̄, q⟩ / ⟨x̄, o⟩` with the same bound is that much tighter. Its code is `B`
//! bit planes of `padded / 8` bytes each (plane `b` holds bit `b` of every `u_i`, laid
//! out as the one-bit code), then `norm`, `dot` and `inv_len = 1 / ‖u − c‖` as f32. The
//! one-bit code is the case `B = 1` (`c = ½`, `inv_len = 2 / √D`, not stored), so one
//! estimator serves both: `⟨x̄, q⟩ = (Σ_b 2^b Σ_{i: bit b of u_i} q_i − c Σ q_i) · inv_len`,
//! on the rotated query rounded to integer steps (`RaBitQ::query`), its integer sum
//! computed by the kernel set's SIMD kernel over the bit planes, or else from per-byte
//! tables.

use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::{Kernels, Metric, PlaneKernel};

/// The quantiser: rotation seed, centroid and bits per coordinate.
#[derive(Clone, Debug, PartialEq)]
pub struct RaBitQ {
    dim: usize,
    padded: usize,
    bits: u8,
    seed: u64,
    centroid: Vec<f32>,
    /// ±1 per coordinate, for each of the three rounds.
    signs: [Vec<f32>; 3],
}

/// Confidence constant of the error bound (the paper's ε0 = 1.9). The bound decides which
/// candidates a re-rank may skip, so it trades reads for recall: with this rotation (three
/// Hadamard rounds, not a dense random matrix) a few percent of estimates fall outside it
/// on clustered 384-d test data (at 3.0, a few in a thousand), but a skipped candidate
/// costs recall only if it is among the true k nearest. On the Debian set under a memory
/// budget (RaBitQ, M 8, ef 48), 1.9 read 35 vectors a query against 3.0's 42, at recall
/// 0.954 against 0.955.
const EPSILON0: f32 = 1.9;

impl RaBitQ {
    /// A quantiser of `dim`-dimensional vectors around `centroid`, rotated by `seed`, with
    /// `bits` (1..=8, checked by the caller) per coordinate.
    pub fn new(seed: u64, centroid: Vec<f32>, bits: u8) -> RaBitQ {
        debug_assert!((1..=MAX_BITS).contains(&bits));
        let dim = centroid.len();
        let padded = padded(dim);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut round = || -> Vec<f32> {
            (0..padded)
                .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
                .collect()
        };
        let signs = [round(), round(), round()];
        RaBitQ {
            dim,
            padded,
            bits,
            seed,
            centroid,
            signs,
        }
    }

    /// Trains one on `sample`: the centroid is the sample's mean.
    pub fn train<'a>(
        dim: usize,
        seed: u64,
        bits: u8,
        sample: impl Iterator<Item = &'a [f32]>,
    ) -> RaBitQ {
        let mut sum = vec![0f64; dim];
        let mut n = 0usize;
        for v in sample {
            for (s, x) in sum.iter_mut().zip(v) {
                *s += *x as f64;
            }
            n += 1;
        }
        let centroid = sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect();
        RaBitQ::new(seed, centroid, bits)
    }

    /// The rotation seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The centroid.
    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }

    /// Bits per coordinate.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Bytes per code of `dim`-dimensional vectors at `bits` per coordinate: the bit
    /// planes, then two scalars (three from two bits on).
    pub fn code_bytes(dim: usize, bits: u8) -> usize {
        padded(dim) / 8 * bits as usize + if bits == 1 { 8 } else { 12 }
    }

    /// `x` (of `dim` values) zero-padded and rotated.
    fn rotate(&self, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; self.padded];
        y[..self.dim].copy_from_slice(x);
        let scale = 1.0 / (self.padded as f32).sqrt();
        for signs in &self.signs {
            for (v, s) in y.iter_mut().zip(signs) {
                *v *= s;
            }
            walsh_hadamard(&mut y);
            for v in &mut y {
                *v *= scale;
            }
        }
        y
    }

    /// Writes the code of `v` into `out` (`code_bytes(dim, bits)` bytes).
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        debug_assert_eq!(out.len(), Self::code_bytes(self.dim, self.bits));
        let residual: Vec<f32> = v.iter().zip(&self.centroid).map(|(x, c)| x - c).collect();
        let norm = residual.iter().map(|x| x * x).sum::<f32>().sqrt();
        let planes = self.padded / 8 * self.bits as usize;
        out[..planes].fill(0);
        let (dot, inv_len) = if norm == 0.0 {
            (1.0, self.one_bit_inv_len())
        } else if self.bits == 1 {
            (
                self.encode_one_bit(&residual, norm, out),
                self.one_bit_inv_len(),
            )
        } else {
            self.encode_levels(&residual, norm, out)
        };
        // The one-bit code stores no `inv_len`: its tail has room for two scalars only.
        for (chunk, x) in out[planes..].chunks_exact_mut(4).zip([norm, dot, inv_len]) {
            chunk.copy_from_slice(&x.to_le_bytes());
        }
    }

    /// Sets the sign bits of the rotated `residual` in `out`; returns `⟨x̄, o⟩`. Computed
    /// as the first one-bit codes were, so that `verify` finds theirs bit for bit.
    fn encode_one_bit(&self, residual: &[f32], norm: f32, out: &mut [u8]) -> f32 {
        let mut abs = 0f32;
        for (i, x) in self.rotate(residual).iter().enumerate() {
            if *x > 0.0 {
                out[i / 8] |= 1 << (i % 8);
            }
            abs += x.abs();
        }
        // ⟨x̄, o⟩ = Σ |o_i| / √D for the unit o; never 0 for a non-zero vector.
        (abs / norm / (self.padded as f32).sqrt()).max(f32::MIN_POSITIVE)
    }

    /// Writes the bit planes of the levels of the rotated `residual` into `out`; returns
    /// `⟨x̄, o⟩` and `1 / ‖u − c‖`.
    fn encode_levels(&self, residual: &[f32], norm: f32, out: &mut [u8]) -> (f32, f32) {
        let o: Vec<f32> = self.rotate(residual).iter().map(|x| x / norm).collect();
        let u = grid_point(&o, self.bits);
        let plane = self.padded / 8;
        for (i, &level) in u.iter().enumerate() {
            for b in 0..self.bits as usize {
                if level >> b & 1 == 1 {
                    out[b * plane + i / 8] |= 1 << (i % 8);
                }
            }
        }
        let c = centre(self.bits);
        let len = u
            .iter()
            .map(|&l| (l as f32 - c).powi(2))
            .sum::<f32>()
            .sqrt();
        let xo = u
            .iter()
            .zip(&o)
            .map(|(&l, x)| (l as f32 - c) * x)
            .sum::<f32>()
            / len;
        // Never 0 for a non-zero vector: the grid point is within 90° of `o`.
        (xo.max(f32::MIN_POSITIVE), 1.0 / len)
    }

    /// `1 / ‖u − c‖` of every one-bit code (each `|u_i − ½|` is ½), which it does not store.
    fn one_bit_inv_len(&self) -> f32 {
        2.0 / (self.padded as f32).sqrt()
    }

    /// Prepares `q` (as stored: normalised under cosine) for estimating its distance to
    /// codes under `metric`, with the SIMD kernel of `kernels` where it has one.
    pub fn query(&self, metric: Metric, kernels: Kernels, q: &[f32]) -> RaBitQuery {
        // L2 works on the query's residual; inner products on the query itself plus the
        // centroid's share, ⟨x, q⟩ = ‖r‖ ⟨o, q⟩ + ⟨c, q⟩.
        let (target, offset) = match metric {
            Metric::L2 => {
                let r: Vec<f32> = q.iter().zip(&self.centroid).map(|(x, c)| x - c).collect();
                (r, 0.0)
            }
            Metric::InnerProduct | Metric::Cosine => {
                let cq: f32 = q.iter().zip(&self.centroid).map(|(x, c)| x * c).sum();
                (q.to_vec(), cq)
            }
        };
        let norm_sq: f32 = target.iter().map(|x| x * x).sum();
        let rotated = self.rotate(&target);
        let (quantised, unit) = quantise(&rotated, self.bits);
        // Σ q_i, the parts combined as `q = FINE a + b`.
        let sum = quantised.chunks_exact(self.padded).fold(0i64, |acc, part| {
            acc * FINE as i64 + part.iter().map(|&x| x as i64).sum::<i64>()
        });
        let bytes = self.padded / 8;
        let sums = match kernels.planes {
            Some(kernel) => LevelSums::Kernel(kernel),
            None => LevelSums::Tables(quantised.chunks_exact(8).flat_map(byte_table).collect()),
        };
        RaBitQuery {
            metric,
            quantised,
            sums,
            bytes,
            bits: self.bits as usize,
            centred_sum: ((1i64 << self.bits) - 1) * sum,
            half_step: unit / 2.0,
            norm_sq,
            norm: norm_sq.sqrt(),
            offset,
            one_bit_inv_len: self.one_bit_inv_len(),
            bound_scale: EPSILON0 / ((self.padded - 1) as f32).sqrt(),
        }
    }
}

/// The rotated query `r` rounded to integer steps for `bits`-bit codes, and the step:
/// the codes' levels are integers, so their inner product with it is one of integers
/// (exact in any order, the same from a SIMD kernel and the tables), scaled once. Up to
/// five bits, one part: `q_i = round(r_i / step)`, `step = max |r_i| / query_range`. From
/// `FINE_BITS` on the codes are precise enough for that rounding to show (on the
/// clustered 384-d data of the tests below, 6-, 7- and 8-bit estimates left their bound
/// 73–76, 77–94 and 381–405 times in 1,000 with one part, 45–58 with two, as at 1..5
/// bits with one: 42–65), so a second part holds the remainder in 1/`FINE` steps:
/// `q_i = FINE a_i + b_i`, the parts laid out one after the other, each within what the
/// kernels' 16-bit pair sums hold.
fn quantise(r: &[f32], bits: u8) -> (Vec<i8>, f32) {
    let range = query_range(bits) as f32;
    let max = r.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (vec![0; r.len() * query_parts(bits)], 0.0);
    }
    let step = max / range;
    let coarse: Vec<f32> = r
        .iter()
        .map(|x| (x / step).round().clamp(-range, range))
        .collect();
    let mut quantised: Vec<i8> = coarse.iter().map(|&a| a as i8).collect();
    if query_parts(bits) == 1 {
        return (quantised, step);
    }
    let half = FINE as f32 / 2.0;
    quantised.extend(
        r.iter()
            .zip(&coarse)
            .map(|(x, a)| ((x / step - a) * FINE as f32).round().clamp(-half, half) as i8),
    );
    (quantised, step / FINE as f32)
}

/// Bits per coordinate from which a query is rounded in two parts (see `quantise`).
const FINE_BITS: u8 = 6;

/// The second part's steps per step of the first.
pub(crate) const FINE: i32 = 128;

/// Parts of a query against `bits`-bit codes: 1, or 2 from `FINE_BITS` on.
pub(crate) const fn query_parts(bits: u8) -> usize {
    if bits >= FINE_BITS { 2 } else { 1 }
}

/// The largest `|q_i|` of a query's first part against `bits`-bit codes: 127, but 64 at
/// eight bits, so that the SIMD kernels' sum of two products `u_i q_i` (`u_i ≤ 255`)
/// stays within an i16 (the second part's is `FINE / 2`).
pub(crate) fn query_range(bits: u8) -> i32 {
    if bits == MAX_BITS { 64 } else { 127 }
}

/// The table of one byte of a bit plane, `coords` its 8 query coordinates: the sum of
/// those whose bits are set, for each of the 256 bytes (built by adding one coordinate
/// at a time; at most 8 × 127 in magnitude).
fn byte_table(coords: &[i8]) -> [i16; 256] {
    let mut t = [0i16; 256];
    for b in 1..256usize {
        t[b] = t[b & (b - 1)] + coords[b.trailing_zeros() as usize] as i16;
    }
    t
}

/// How a prepared query sums `Σ u_i q_i` over a code's levels.
enum LevelSums {
    /// The kernel set's SIMD kernel over the bit planes.
    Kernel(PlaneKernel),
    /// Per-byte lookup tables (`byte_table`) of each query part, where the CPU has no
    /// such kernel.
    Tables(Vec<i16>),
}

/// A query prepared for one search: its rotated coordinates quantised to integers.
pub struct RaBitQuery {
    metric: Metric,
    /// The rotated query in parts (see `quantise`), in units of `2 · half_step`.
    quantised: Vec<i8>,
    sums: LevelSums,
    /// Bytes per bit plane.
    bytes: usize,
    bits: usize,
    /// `(2^B − 1) Σ q_i` (the parts combined): twice the centre's share of `Σ u_i q_i`.
    centred_sum: i64,
    half_step: f32,
    norm_sq: f32,
    norm: f32,
    offset: f32,
    one_bit_inv_len: f32,
    bound_scale: f32,
}

impl RaBitQuery {
    /// The estimated distance to `code` and a bound on the estimate's error.
    #[inline]
    pub fn estimate(&self, code: &[u8]) -> (f32, f32) {
        let planes = self.bytes * self.bits;
        let s = match &self.sums {
            LevelSums::Kernel(kernel) => kernel(&self.quantised, &code[..planes], self.bits),
            LevelSums::Tables(table) => self.table_sum(table, code),
        };
        let scalar = |k: usize| {
            let at = planes + 4 * k;
            f32::from_le_bytes(code[at..at + 4].try_into().expect("4 bytes"))
        };
        let (norm, dot) = (scalar(0), scalar(1));
        let inv_len = if self.bits == 1 {
            self.one_bit_inv_len
        } else {
            scalar(2)
        };
        // Σ (u_i − c) q_i = (2 Σ u_i q_i − (2^B − 1) Σ q_i) / 2, in integers.
        let xq = (2 * s - self.centred_sum) as f32 * self.half_step * inv_len;
        let oq = xq / dot;
        let err = self.norm * ((1.0 - dot * dot).max(0.0) / (dot * dot)).sqrt() * self.bound_scale;
        match self.metric {
            Metric::L2 => (
                norm * norm + self.norm_sq - 2.0 * norm * oq,
                2.0 * norm * err,
            ),
            Metric::InnerProduct | Metric::Cosine => (1.0 - (norm * oq + self.offset), norm * err),
        }
    }

    /// `Σ_i u_i q_i` of `code` from the per-byte tables.
    fn table_sum(&self, table: &[i16], code: &[u8]) -> i64 {
        match self.bits {
            1 => table_sum::<1>(table, code, self.bytes),
            2 => table_sum::<2>(table, code, self.bytes),
            3 => table_sum::<3>(table, code, self.bytes),
            4 => table_sum::<4>(table, code, self.bytes),
            5 => table_sum::<5>(table, code, self.bytes),
            6 => table_sum::<6>(table, code, self.bytes),
            7 => table_sum::<7>(table, code, self.bytes),
            _ => table_sum::<8>(table, code, self.bytes),
        }
    }

    /// The estimated distance to `code`.
    #[inline]
    pub fn eval(&self, code: &[u8]) -> f32 {
        self.estimate(code).0
    }
}

/// `Σ_i u_i q_i` over the levels of `code`'s `B` bit planes of `bytes` bytes, each query
/// part's sum weighted as in `quantise`: byte `j` of every plane looks up the same table
/// row, so the rows are walked once, and the planes' sums are independent chains.
#[inline(always)]
fn table_sum<const B: usize>(table: &[i16], code: &[u8], bytes: usize) -> i64 {
    let planes = &code[..B * bytes];
    let mut total = 0i64;
    for part in table.chunks_exact(bytes * 256) {
        let mut sums = [0i32; B];
        for (j, row) in part.chunks_exact(256).enumerate() {
            for (b, sum) in sums.iter_mut().enumerate() {
                *sum += row[planes[b * bytes + j] as usize] as i32;
            }
        }
        let part_sum: i64 = sums
            .iter()
            .enumerate()
            .map(|(b, &sum)| (sum as i64) << b)
            .sum();
        total = total * FINE as i64 + part_sum;
    }
    total
}

/// Bits per coordinate a code may have.
pub const MAX_BITS: u8 = 8;

/// The rotated dimension of `dim`-dimensional vectors: a power of two, at least 64.
fn padded(dim: usize) -> usize {
    dim.next_power_of_two().max(64)
}

/// `c = (2^bits − 1) / 2`, the centre of the code grid.
fn centre(bits: u8) -> f32 {
    ((1u32 << bits) - 1) as f32 / 2.0
}

/// Where extended RaBitQ starts its search for the grid's scale, as a fraction of the
/// scale at which the largest coordinate reaches the top level, by bits (the tables of
/// the authors' RaBitQ-Library): below it the best point is never found, and starting
/// there skips most of the candidate scales at 6..8 bits.
const SCALE_START: [f32; MAX_BITS as usize + 1] =
    [0.0, 0.0, 0.15, 0.20, 0.52, 0.59, 0.71, 0.75, 0.77];

/// The levels `u` (each `< 2^bits`) of the grid point nearest in angle to the unit vector
/// `o`: `u_i = c ± (k_i + ½)` by the sign of `o_i`, `k_i = min(⌊t |o_i|⌋, 2^(bits−1) − 1)`
/// at the scale `t` that maximises the cosine `Σ |o_i| (k_i + ½) / √Σ (k_i + ½)²`. The
/// cosine changes only where some `t |o_i|` crosses an integer, so the search visits those
/// scales in order (the paper's algorithm, with a sort in place of its heap), updating
/// both sums in O(1) a step.
fn grid_point(o: &[f32], bits: u8) -> Vec<u8> {
    let top = (1u32 << (bits - 1)) - 1;
    let max = o.iter().fold(0f32, |m, x| m.max(x.abs()));
    let end = (top + 1) as f32 / max;
    let start = end * SCALE_START[bits as usize];
    let level = |t: f32, x: f32| ((t * x.abs()) as u32).min(top);
    let (mut num, mut den) = (0f64, 0f64);
    let mut crossings = Vec::new();
    for (i, x) in o.iter().enumerate() {
        let k = level(start, *x);
        num += x.abs() as f64 * (k as f64 + 0.5);
        den += (k as f64 + 0.5).powi(2);
        for next in k + 1..=top {
            let t = next as f32 / x.abs();
            if t > end {
                break;
            }
            crossings.push((t, i as u32));
        }
    }
    crossings.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut best, mut best_t) = (num / den.sqrt(), start);
    let mut k: Vec<u32> = o.iter().map(|x| level(start, *x)).collect();
    for (t, i) in crossings {
        let i = i as usize;
        k[i] += 1;
        // (k + ½)² − (k − ½)² = 2k.
        num += o[i].abs() as f64;
        den += 2.0 * k[i] as f64;
        let cosine = num / den.sqrt();
        if cosine > best {
            (best, best_t) = (cosine, t);
        }
    }
    let half = 1u32 << (bits - 1);
    o.iter()
        .map(|x| {
            // The crossing at `best_t` itself belongs to it: nudge past rounding.
            let k = level(best_t * (1.0 + 1e-6), *x);
            (if *x > 0.0 { half + k } else { half - 1 - k }) as u8
        })
        .collect()
}

/// In-place unnormalised fast Walsh-Hadamard transform (`x.len()` a power of two, at
/// least 8). The first three levels run as one 8-point transform per chunk, as their
/// strides are too short for the compiler to vectorise level by level (a tenth of a
/// 2-bit query's search time went to the rotation when they did): the same additions in
/// the same order, so the same bits as the textbook loop that rotated the first codes.
fn walsh_hadamard(x: &mut [f32]) {
    let n = x.len();
    for chunk in x.chunks_exact_mut(8) {
        for h in [1, 2, 4] {
            for i in (0..8).step_by(2 * h) {
                for j in i..i + h {
                    let (a, b) = (chunk[j], chunk[j + h]);
                    chunk[j] = a + b;
                    chunk[j + h] = a - b;
                }
            }
        }
    }
    let mut h = 8;
    while h < n {
        for i in (0..n).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
        h *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
            .collect()
    }

    /// Points around 20 centres: neighbours stand out, as in real embeddings (uniform
    /// random data has all distances alike, which no code can rank).
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let centres = random(20, dim, seed);
        let noise = random(n, dim, seed + 1);
        (0..n)
            .map(|i| {
                centres[i % 20]
                    .iter()
                    .zip(&noise[i])
                    .map(|(c, e)| c + 0.3 * e)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn walsh_hadamard_gives_the_textbook_loops_bits() {
        // Codes written before the chunked first levels must still verify bit for bit.
        for n in [8, 64, 512, 1024] {
            let mut x = random(1, n, n as u64).remove(0);
            let mut expected = x.clone();
            let mut h = 1;
            while h < n {
                for i in (0..n).step_by(2 * h) {
                    for j in i..i + h {
                        let (a, b) = (expected[j], expected[j + h]);
                        expected[j] = a + b;
                        expected[j + h] = a - b;
                    }
                }
                h *= 2;
            }
            walsh_hadamard(&mut x);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&expected), "{n} points");
        }
    }

    #[test]
    fn rotation_preserves_norms_and_inner_products() {
        let q = RaBitQ::new(7, vec![0.0; 100], 1);
        let v = random(2, 100, 1);
        let (a, b) = (q.rotate(&v[0]), q.rotate(&v[1]));
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        assert!((dot(&a, &b) - dot(&v[0], &v[1])).abs() < 1e-3);
        assert!((dot(&a, &a) - dot(&v[0], &v[0])).abs() < 1e-3);
    }

    fn truth(metric: Metric, v: &[f32], q: &[f32]) -> f32 {
        match metric {
            Metric::L2 => v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
            _ => 1.0 - v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(),
        }
    }

    /// The levels `u` a code holds, read back from its bit planes.
    fn levels(code: &[u8], padded: usize, bits: u8) -> Vec<u32> {
        let plane = padded / 8;
        (0..padded)
            .map(|i| {
                (0..bits as usize)
                    .map(|b| ((code[b * plane + i / 8] >> (i % 8) & 1) as u32) << b)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn level_sums_match_a_direct_inner_product() {
        // Each kernel set's estimate against ⟨u − c, q'⟩ · inv_len computed coordinate by
        // coordinate from the decoded levels: on the quantised query `q̂` to float
        // rounding, and on the exact rotated query `q'` within what the rounding of the
        // query can move it (|⟨u − c, q' − q̂⟩| · inv_len ≤ ‖q' − q̂‖, the code's
        // `(u − c) · inv_len` being a unit vector).
        let dim = 100;
        let data = random(50, dim, 4);
        for kernels in Kernels::available() {
            for bits in 1..=MAX_BITS {
                check_level_sums(&data, bits, kernels);
            }
        }
    }

    fn check_level_sums(data: &[Vec<f32>], bits: u8, kernels: Kernels) {
        let q = RaBitQ::train(data[0].len(), 5, bits, data.iter().map(|v| v.as_slice()));
        let mut code = vec![0u8; RaBitQ::code_bytes(data[0].len(), bits)];
        let prepared = q.query(Metric::InnerProduct, kernels, &data[0]);
        let rotated = q.rotate(&data[0]);
        let (unit, parts) = (2.0 * prepared.half_step, query_parts(bits));
        let rounded: Vec<f32> = (0..q.padded)
            .map(|i| {
                let part = |p: usize| prepared.quantised[p * q.padded + i] as f32;
                match parts {
                    1 => part(0) * unit,
                    _ => (part(0) * FINE as f32 + part(1)) * unit,
                }
            })
            .collect();
        let rounding = rotated
            .iter()
            .zip(&rounded)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!(rounding <= (q.padded as f32).sqrt() * unit / 2.0 * 1.001);
        for v in &data[1..] {
            q.encode(v, &mut code);
            let u = levels(&code, q.padded, bits);
            assert!(u.iter().all(|&l| l < 1 << bits));
            let c = centre(bits);
            let len = u
                .iter()
                .map(|&l| (l as f32 - c).powi(2))
                .sum::<f32>()
                .sqrt();
            let xq = |query: &[f32]| -> f32 {
                u.iter()
                    .zip(query)
                    .map(|(&l, x)| (l as f32 - c) * x)
                    .sum::<f32>()
                    / len
            };
            let planes = q.padded / 8 * bits as usize;
            let scalar = |k: usize| {
                f32::from_le_bytes(code[planes + 4 * k..planes + 4 * k + 4].try_into().unwrap())
            };
            let (norm, dot) = (scalar(0), scalar(1));
            let distance = |xq: f32| 1.0 - (norm * xq / dot + prepared.offset);
            let (est, _) = prepared.estimate(&code);
            let (on_rounded, exact) = (distance(xq(&rounded)), distance(xq(&rotated)));
            let isa = kernels.isa;
            assert!(
                (est - on_rounded).abs() < 1e-4 * (1.0 + on_rounded.abs()),
                "{isa}, {bits} bits: {est} against {on_rounded}"
            );
            assert!(
                (est - exact).abs() <= norm / dot * rounding + 1e-4 * (1.0 + exact.abs()),
                "{isa}, {bits} bits: {est} against {exact}, rounding {rounding}"
            );
        }
    }

    #[test]
    fn more_bits_bring_the_code_closer_to_the_vector() {
        // ⟨x̄, o⟩, the cosine of code and vector: the paper's 0.8 at one bit, rising
        // towards 1 with each bit (its error bound shrinks with it).
        let dim = 384;
        let data = random(200, dim, 6);
        let mut last = 0.0;
        for bits in 1..=MAX_BITS {
            let q = RaBitQ::train(dim, 7, bits, data.iter().map(|v| v.as_slice()));
            let mut code = vec![0u8; RaBitQ::code_bytes(dim, bits)];
            let planes = q.padded / 8 * bits as usize;
            let mut mean = 0.0;
            for v in &data {
                q.encode(v, &mut code);
                mean += f32::from_le_bytes(code[planes + 4..planes + 8].try_into().unwrap());
            }
            mean /= data.len() as f32;
            assert!(
                mean > last,
                "{bits} bits: mean cosine {mean}, {last} with one fewer"
            );
            last = mean;
        }
        assert!(last > 0.99, "8 bits: mean cosine {last}");
    }

    #[test]
    fn estimates_are_unbiased_over_rotations() {
        // For one pair, the mean error over many rotations is near zero (the estimator is
        // unbiased over the random rotation), well inside four standard errors.
        let dim = 128;
        let data = clustered(2, dim, 8);
        for bits in [1, 2, 4] {
            let mut errors = Vec::new();
            for seed in 0..400 {
                let q = RaBitQ::new(seed, vec![0.0; dim], bits);
                let mut code = vec![0u8; RaBitQ::code_bytes(dim, bits)];
                q.encode(&data[0], &mut code);
                let prepared = q.query(Metric::InnerProduct, Kernels::detect(), &data[1]);
                let (est, _) = prepared.estimate(&code);
                errors.push((est - truth(Metric::InnerProduct, &data[0], &data[1])) as f64);
            }
            let n = errors.len() as f64;
            let mean = errors.iter().sum::<f64>() / n;
            let sd = (errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(
                mean.abs() < 4.0 * sd / n.sqrt() + 1e-6,
                "{bits} bits: mean error {mean}, sd {sd}"
            );
        }
    }

    #[test]
    fn estimates_rank_well_and_stay_within_their_bounds() {
        for metric in [Metric::L2, Metric::InnerProduct] {
            let mut last = f32::INFINITY;
            for bits in [1, 2, 4, 8] {
                let width = check_bounds_and_ranking(bits, metric);
                assert!(
                    width < last,
                    "{bits} bits, {metric:?}: bounds {width}, {last} before"
                );
                last = width;
            }
        }
    }

    /// Checks the bound and the ranking of `bits`-bit codes; returns the mean bound.
    fn check_bounds_and_ranking(bits: u8, metric: Metric) -> f32 {
        let dim = 384;
        let data = clustered(1000, dim, 2);
        let q = RaBitQ::train(dim, 3, bits, data.iter().map(|v| v.as_slice()));
        let mut code = vec![0u8; RaBitQ::code_bytes(dim, bits)];
        // A query inside one of the clusters.
        let query: Vec<f32> = data[7]
            .iter()
            .zip(&random(1, dim, 9)[0])
            .map(|(x, e)| x + 0.1 * e)
            .collect();
        let prepared = q.query(metric, Kernels::detect(), &query);
        let mut outside = 0;
        let mut pairs = Vec::new();
        let mut widths = 0.0;
        for (i, v) in data.iter().enumerate() {
            q.encode(v, &mut code);
            let (est, bound) = prepared.estimate(&code);
            let truth = truth(metric, v, &query);
            if (est - truth).abs() > bound {
                outside += 1;
            }
            widths += bound;
            pairs.push((truth, est, i));
        }
        // The bound holds but for a few percent (see EPSILON0); the true 10 nearest are
        // among the 50 estimated nearest (what a re-rank of the beam relies on).
        assert!(
            outside <= 80,
            "{bits} bits, {metric:?}: {outside} of 1000 outside the bound"
        );
        let shortlist = 50;
        let mut by_truth = pairs.clone();
        by_truth.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut by_est = pairs;
        by_est.sort_by(|a, b| a.1.total_cmp(&b.1));
        let top: Vec<usize> = by_est[..shortlist].iter().map(|p| p.2).collect();
        let found = by_truth[..10].iter().filter(|p| top.contains(&p.2)).count();
        assert!(
            found >= 9,
            "{bits} bits, {metric:?}: {found} of the true 10 in the estimated {shortlist}"
        );
        widths / data.len() as f32
    }
}
