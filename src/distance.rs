//! Distance kernels. They see slices only: no knowledge of slots, pages or graphs.
//!
//! Each metric reduces to one of two kernels, squared L2 or the dot product. A portable
//! scalar version of each exists for every target; SIMD versions (AVX-512F, AVX2+FMA on
//! x86-64, NEON on aarch64) are chosen once at runtime by [`Kernels::detect`].

/// How distance between two vectors is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// `1 - <a, b>` (as hnswlib's `ip` space). Not a metric; vectors are used as given.
    InnerProduct,
    /// `1 - cos(a, b)`: vectors are normalised on insert and queries on search, then the
    /// inner-product kernel is used.
    Cosine,
}

impl Metric {
    /// Code stored in file headers and metadata.
    pub(crate) fn code(self) -> u32 {
        match self {
            Metric::L2 => 1,
            Metric::InnerProduct => 2,
            Metric::Cosine => 3,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Metric> {
        match code {
            1 => Some(Metric::L2),
            2 => Some(Metric::InnerProduct),
            3 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The name used by the CLI and the Python API (`l2`, `ip`, `cosine`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Metric> {
        match s {
            "l2" | "L2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" => Ok(Metric::Cosine),
            other => Err(crate::Error::InvalidOption(format!(
                "unknown metric {other:?} (expected cosine, l2 or ip)"
            ))),
        }
    }
}

/// A kernel: both slices have the same length.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// A kernel over 8-bit codes: `l2` computes `Σ (a_i − b_i·c_i)²`; `dot` computes
/// `Σ a_i·c_i` (and ignores `b`). The slices have the same length.
pub type CodeKernel = fn(&[f32], &[f32], &[u8]) -> f32;

/// The squared-L2 and dot-product kernels of one instruction set.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// Squared Euclidean distance.
    pub l2sq: Kernel,
    /// Dot product.
    pub dot: Kernel,
    /// Squared L2 against SQ8 codes (see [`CodeKernel`]).
    pub l2sq_u8: CodeKernel,
    /// Dot product against SQ8 codes (see [`CodeKernel`]).
    pub dot_u8: CodeKernel,
    /// Name of the instruction set (for benchmarks and `stats`).
    pub isa: &'static str,
}

impl Kernels {
    /// Portable scalar kernels.
    pub fn scalar() -> Kernels {
        Kernels {
            l2sq: l2sq_scalar,
            dot: dot_scalar,
            l2sq_u8: l2sq_u8_scalar,
            dot_u8: dot_u8_scalar,
            isa: "scalar",
        }
    }

    /// The fastest kernels this CPU supports.
    pub fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if std::arch::is_x86_feature_detected!("avx512f") && avx2 {
                return x86::avx512_kernels();
            }
            if avx2 {
                return x86::avx2_kernels();
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return neon::kernels();
            }
        }
        Kernels::scalar()
    }

    /// All kernel sets this CPU can run, scalar first (for tests and benchmarks).
    pub fn available() -> Vec<Kernels> {
        let mut all = vec![Kernels::scalar()];
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2 {
                all.push(x86::avx2_kernels());
            }
            if std::arch::is_x86_feature_detected!("avx512f") && avx2 {
                all.push(x86::avx512_kernels());
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                all.push(neon::kernels());
            }
        }
        all
    }
}

/// A metric bound to a kernel: what the graph calls to compare two stored vectors.
#[derive(Clone, Copy, Debug)]
pub struct Distance {
    kernel: Kernel,
    /// True for inner product and cosine: distance is `1 - dot`.
    one_minus: bool,
}

impl Distance {
    /// Binds `metric` to the given kernels.
    pub fn new(metric: Metric, kernels: Kernels) -> Distance {
        match metric {
            Metric::L2 => Distance {
                kernel: kernels.l2sq,
                one_minus: false,
            },
            Metric::InnerProduct | Metric::Cosine => Distance {
                kernel: kernels.dot,
                one_minus: true,
            },
        }
    }

    /// Distance between two vectors of equal length.
    #[inline(always)]
    pub fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        let k = (self.kernel)(a, b);
        if self.one_minus { 1.0 - k } else { k }
    }
}

/// Scales `v` to unit length in place. Returns false for an all-zero vector.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = dot_scalar(v, v).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    let inv = 1.0 / norm;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

/// Portable squared L2. Four independent accumulators let the compiler vectorise and hide
/// the add latency even without target features.
pub fn l2sq_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            let d = a[i * 4 + j] - b[i * 4 + j];
            acc[j] += d * d;
        }
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..n {
        let d = a[i] - b[i];
        sum += d * d;
    }
    sum
}

/// Portable dot product.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            acc[j] += a[i * 4 + j] * b[i * 4 + j];
        }
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..n {
        sum += a[i] * b[i];
    }
    sum
}

/// Portable `Σ (a_i − b_i·c_i)²` over 8-bit codes. Eight independent lanes over fixed-size
/// chunks, so that the compiler vectorises it (the code-to-float widening included).
pub fn l2sq_u8_scalar(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [0.0f32; 8];
    let (ac, bc, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    let (ar, br, cr) = (ac.remainder(), bc.remainder(), cc.remainder());
    for ((a, b), c) in ac.zip(bc).zip(cc) {
        for j in 0..8 {
            let d = a[j] - b[j] * c[j] as f32;
            acc[j] += d * d;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for ((a, b), c) in ar.iter().zip(br).zip(cr) {
        let d = a - b * *c as f32;
        sum += d * d;
    }
    sum
}

/// Portable `Σ a_i·c_i` over 8-bit codes (vectorisable as `l2sq_u8_scalar`).
pub fn dot_u8_scalar(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
    let n = a.len().min(c.len());
    let (a, c) = (&a[..n], &c[..n]);
    let mut acc = [0.0f32; 8];
    let (ac, cc) = (a.chunks_exact(8), c.chunks_exact(8));
    let (ar, cr) = (ac.remainder(), cc.remainder());
    for (a, c) in ac.zip(cc) {
        for j in 0..8 {
            acc[j] += a[j] * c[j] as f32;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (a, c) in ar.iter().zip(cr) {
        sum += a * *c as f32;
    }
    sum
}

/// Scalar quantisation to 8 bits per component (SQ8): component `i` is stored as a code
/// `c` in 0..=255 with `x ≈ offset_i + scale_i · c`, the range of each component learnt
/// from the data. A code vector is a quarter of the bytes of the f32 one, which is what a
/// graph walk is bound by; exact f32 distances re-rank the walk's answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sq8 {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Sq8 {
    /// Learns each component's range (min to max) from `rows`.
    pub fn train<'a>(dim: usize, rows: impl IntoIterator<Item = &'a [f32]>) -> Sq8 {
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        for row in rows {
            for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(x);
                *h = h.max(x);
            }
        }
        let (offset, scale) = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| {
                if l.is_finite() && h > l {
                    (l, (h - l) / 255.0)
                } else {
                    // A constant (or unseen) component: every code decodes to `l`.
                    (if l.is_finite() { l } else { 0.0 }, 0.0)
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The two code kernels (`l2sq_u8`, `dot_u8`) for one instruction set, which differ
    /// only in register width: two accumulators over `2 × lanes` elements per step, one
    /// more step of `lanes`, then a scalar tail (dimensions are usually multiples of the
    /// width). A macro rather than a generic function because the intrinsics of each set
    /// only inline into functions compiled with that set's `target_feature`.
    macro_rules! code_kernels {
        ($feature:literal, $lanes:literal, $l2sq:ident, $dot:ident, $zero:ident, $load:ident,
         $widen:ident, $fmadd:ident, $fnmadd:ident, $add:ident, $hsum:ident) => {
            #[target_feature(enable = $feature)]
            fn $l2sq(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
                let n = a.len().min(b.len()).min(c.len());
                let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_ptr());
                let mut acc0 = $zero();
                let mut acc1 = $zero();
                let mut i = 0;
                // SAFETY (all loads below): each reads `lanes` elements at `i` or
                // `i + lanes` with the loop conditions keeping the last one below `n`,
                // inside all three slices.
                unsafe {
                    while i + 2 * $lanes <= n {
                        let d0 = $fnmadd($load(pb.add(i)), $widen(pc.add(i)), $load(pa.add(i)));
                        let d1 = $fnmadd(
                            $load(pb.add(i + $lanes)),
                            $widen(pc.add(i + $lanes)),
                            $load(pa.add(i + $lanes)),
                        );
                        acc0 = $fmadd(d0, d0, acc0);
                        acc1 = $fmadd(d1, d1, acc1);
                        i += 2 * $lanes;
                    }
                    if i + $lanes <= n {
                        let d0 = $fnmadd($load(pb.add(i)), $widen(pc.add(i)), $load(pa.add(i)));
                        acc0 = $fmadd(d0, d0, acc0);
                        i += $lanes;
                    }
                }
                let mut sum = $hsum($add(acc0, acc1));
                for j in i..n {
                    let d = a[j] - b[j] * c[j] as f32;
                    sum += d * d;
                }
                sum
            }

            #[target_feature(enable = $feature)]
            fn $dot(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
                let n = a.len().min(c.len());
                let (pa, pc) = (a.as_ptr(), c.as_ptr());
                let mut acc0 = $zero();
                let mut acc1 = $zero();
                let mut i = 0;
                // SAFETY (all loads below): as in the l2sq kernel, within both slices.
                unsafe {
                    while i + 2 * $lanes <= n {
                        acc0 = $fmadd($load(pa.add(i)), $widen(pc.add(i)), acc0);
                        acc1 = $fmadd($load(pa.add(i + $lanes)), $widen(pc.add(i + $lanes)), acc1);
                        i += 2 * $lanes;
                    }
                    if i + $lanes <= n {
                        acc0 = $fmadd($load(pa.add(i)), $widen(pc.add(i)), acc0);
                        i += $lanes;
                    }
                }
                let mut sum = $hsum($add(acc0, acc1));
                for j in i..n {
                    sum += a[j] * c[j] as f32;
                }
                sum
            }
        };
    }

    /// The AVX2+FMA kernel set (callers check both features first).
    pub fn avx2_kernels() -> super::Kernels {
        super::Kernels {
            l2sq: l2sq_avx2,
            dot: dot_avx2,
            l2sq_u8: l2sq_u8_avx2,
            dot_u8: dot_u8_avx2,
            isa: "avx2+fma",
        }
    }

    /// The AVX-512 kernel set (callers check avx512f, avx2 and fma first).
    pub fn avx512_kernels() -> super::Kernels {
        super::Kernels {
            l2sq: l2sq_avx512,
            dot: dot_avx512,
            l2sq_u8: l2sq_u8_avx512,
            dot_u8: dot_u8_avx512,
            isa: "avx512f",
        }
    }

    pub fn l2sq_u8_avx2(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        // SAFETY: only reachable after avx2 and fma were detected at runtime (see below).
        unsafe { l2sq_u8_avx2_impl(a, b, c) }
    }
    pub fn dot_u8_avx2(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        // SAFETY: only reachable after avx2 and fma were detected at runtime (see below).
        unsafe { dot_u8_avx2_impl(a, b, c) }
    }

    /// Eight codes from `p` widened to f32.
    ///
    /// # Safety
    /// `p` must point at 8 readable bytes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn widen8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes; loadl_epi64 reads exactly 8.
        let bytes = unsafe { _mm_loadl_epi64(p as *const __m128i) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes))
    }

    code_kernels!(
        "avx2,fma",
        8,
        l2sq_u8_avx2_impl,
        dot_u8_avx2_impl,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        widen8,
        _mm256_fmadd_ps,
        _mm256_fnmadd_ps,
        _mm256_add_ps,
        hsum256
    );

    // The safe wrappers below are only ever handed out by `Kernels::detect`/`available`
    // after the matching `is_x86_feature_detected!` check, which is what makes calling the
    // `#[target_feature]` functions sound.

    pub fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable after avx2 and fma were detected at runtime (see above).
        unsafe { l2sq_avx2_impl(a, b) }
    }
    pub fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable after avx2 and fma were detected at runtime (see above).
        unsafe { dot_avx2_impl(a, b) }
    }
    pub fn l2sq_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable after avx512f was detected at runtime (see above).
        unsafe { l2sq_avx512_impl(a, b) }
    }
    pub fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable after avx512f was detected at runtime (see above).
        unsafe { dot_avx512_impl(a, b) }
    }

    pub fn l2sq_u8_avx512(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        // SAFETY: only reachable after avx512f was detected at runtime (see above).
        unsafe { l2sq_u8_avx512_impl(a, b, c) }
    }
    pub fn dot_u8_avx512(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        // SAFETY: only reachable after avx512f was detected at runtime (see above).
        unsafe { dot_u8_avx512_impl(a, b, c) }
    }

    /// Sixteen codes from `p` widened to f32.
    ///
    /// # Safety
    /// `p` must point at 16 readable bytes.
    #[target_feature(enable = "avx512f")]
    unsafe fn widen16(p: *const u8) -> __m512 {
        // SAFETY: the caller guarantees 16 readable bytes; loadu_si128 reads exactly 16.
        let bytes = unsafe { _mm_loadu_si128(p as *const __m128i) };
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes))
    }

    code_kernels!(
        "avx512f",
        16,
        l2sq_u8_avx512_impl,
        dot_u8_avx512_impl,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        widen16,
        _mm512_fmadd_ps,
        _mm512_fnmadd_ps,
        _mm512_add_ps,
        _mm512_reduce_add_ps
    );

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let lo = _mm256_castps256_ps128(v);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2sq_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads below): every load reads 8 or 16 floats starting at `i`, and the
        // loop conditions keep `i + width <= n`, inside both slices. Unaligned loads are used
        // because queries come from arbitrary user memory.
        unsafe {
            while i + 16 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
                i += 16;
            }
            if i + 8 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                i += 8;
            }
        }
        let mut sum = hsum256(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            let d = a[j] - b[j];
            sum += d * d;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: as in `l2sq_avx2_impl`, loads stay within `n` elements of both slices.
        unsafe {
            while i + 16 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
                i += 16;
            }
            if i + 8 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                i += 8;
            }
        }
        let mut sum = hsum256(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    #[target_feature(enable = "avx512f")]
    fn l2sq_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: full loads stay within `i + 16 <= n`; the tail uses a masked load whose
        // mask covers only the `n - i` remaining elements, so nothing past the end is read.
        unsafe {
            while i + 32 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                let d1 = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
                i += 32;
            }
            if i + 16 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
                let d0 = _mm512_sub_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f")]
    fn dot_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: as in `l2sq_avx512_impl`: bounded full loads and a masked tail.
        unsafe {
            while i + 32 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc1,
                );
                i += 32;
            }
            if i + 16 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
                acc0 = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                    acc0,
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// The NEON kernel set (callers check neon first). The code kernels stay the scalar
    /// ones: written in eight fixed lanes, they compile to NEON without intrinsics.
    pub fn kernels() -> super::Kernels {
        super::Kernels {
            l2sq,
            dot,
            isa: "neon",
            ..super::Kernels::scalar()
        }
    }

    pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only handed out after NEON was detected at runtime.
        unsafe { l2sq_impl(a, b) }
    }
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only handed out after NEON was detected at runtime.
        unsafe { dot_impl(a, b) }
    }

    #[target_feature(enable = "neon")]
    fn l2sq_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = vdupq_n_f32(0.0);
        let mut acc1 = vdupq_n_f32(0.0);
        let mut i = 0;
        // SAFETY: each load reads 4 floats at `i` with `i + 4 <= n` (8 for the pair).
        unsafe {
            while i + 8 <= n {
                let d0 = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                let d1 = vsubq_f32(vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
                acc0 = vfmaq_f32(acc0, d0, d0);
                acc1 = vfmaq_f32(acc1, d1, d1);
                i += 8;
            }
        }
        let mut sum = vaddvq_f32(vaddq_f32(acc0, acc1));
        for j in i..n {
            let d = a[j] - b[j];
            sum += d * d;
        }
        sum
    }

    #[target_feature(enable = "neon")]
    fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = vdupq_n_f32(0.0);
        let mut acc1 = vdupq_n_f32(0.0);
        let mut i = 0;
        // SAFETY: each load reads 4 floats at `i` with `i + 4 <= n` (8 for the pair).
        unsafe {
            while i + 8 <= n {
                acc0 = vfmaq_f32(acc0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                acc1 = vfmaq_f32(acc1, vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
                i += 8;
            }
        }
        let mut sum = vaddvq_f32(vaddq_f32(acc0, acc1));
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    #[test]
    fn simd_kernels_agree_with_scalar_on_odd_lengths() {
        let mut rng = StdRng::seed_from_u64(7);
        let scalar = Kernels::scalar();
        for kernels in Kernels::available() {
            for len in (0..=67).chain([127, 128, 129, 383, 384, 385, 1000, 1537]) {
                for _ in 0..20 {
                    let a: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let b: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let (l, ls) = ((kernels.l2sq)(&a, &b), (scalar.l2sq)(&a, &b));
                    let (d, ds) = ((kernels.dot)(&a, &b), (scalar.dot)(&a, &b));
                    let scale = len as f32;
                    assert!(
                        close(l, ls, scale),
                        "{} l2sq len {len}: {l} vs {ls}",
                        kernels.isa
                    );
                    assert!(
                        close(d, ds, scale),
                        "{} dot len {len}: {d} vs {ds}",
                        kernels.isa
                    );
                }
            }
        }
    }

    #[test]
    fn code_kernels_agree_with_scalar_on_odd_lengths() {
        let mut rng = StdRng::seed_from_u64(8);
        let scalar = Kernels::scalar();
        for kernels in Kernels::available() {
            for len in (0..=67).chain([127, 128, 129, 383, 384, 385, 1000]) {
                let a: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
                let b: Vec<f32> = (0..len).map(|_| rng.random_range(0.0..0.01)).collect();
                let c: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let (l, ls) = ((kernels.l2sq_u8)(&a, &b, &c), (scalar.l2sq_u8)(&a, &b, &c));
                let (d, ds) = ((kernels.dot_u8)(&a, &b, &c), (scalar.dot_u8)(&a, &b, &c));
                let scale = len as f32 * 255.0;
                assert!(
                    close(l, ls, scale),
                    "{} l2sq_u8 len {len}: {l} vs {ls}",
                    kernels.isa
                );
                assert!(
                    close(d, ds, scale),
                    "{} dot_u8 len {len}: {d} vs {ds}",
                    kernels.isa
                );
            }
        }
    }

    #[test]
    fn sq8_distances_approximate_exact_ones() {
        let mut rng = StdRng::seed_from_u64(9);
        let dim = 96;
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|_| (0..dim).map(|_| rng.random_range(-0.5..1.5)).collect())
            .collect();
        let sq = Sq8::train(dim, rows.iter().map(|r| r.as_slice()));
        let mut codes = vec![0u8; dim];
        for metric in [Metric::L2, Metric::InnerProduct] {
            let exact = Distance::new(metric, Kernels::scalar());
            for kernels in Kernels::available() {
                let q = &rows[0];
                let prepared = sq.query(metric, kernels, q);
                for r in &rows[1..] {
                    sq.encode(r, &mut codes);
                    let (approx, truth) = (prepared.eval(&codes), exact.eval(q, r));
                    // Each component is off by at most half a step (2/255 / 2 here).
                    assert!(
                        (approx - truth).abs() <= 0.02 * truth.abs().max(1.0),
                        "{metric:?} {}: {approx} vs {truth}",
                        kernels.isa
                    );
                }
            }
        }
        // Out-of-range values clamp; constant components decode exactly.
        let sq = Sq8::train(2, [[1.0f32, 5.0].as_slice(), &[3.0, 5.0]]);
        sq.encode(&[10.0, 5.0], &mut codes[..2]);
        assert_eq!(&codes[..2], &[255, 0]);
    }

    #[test]
    fn scalar_kernels_match_definitions() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [5.0, 4.0, 3.0, 2.0, 1.0];
        assert_eq!(l2sq_scalar(&a, &b), 16.0 + 4.0 + 0.0 + 4.0 + 16.0);
        assert_eq!(dot_scalar(&a, &b), 5.0 + 8.0 + 9.0 + 8.0 + 5.0);
    }

    #[test]
    fn metric_distances() {
        let k = Kernels::detect();
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        assert_eq!(Distance::new(Metric::L2, k).eval(&a, &b), 2.0);
        assert_eq!(Distance::new(Metric::InnerProduct, k).eval(&a, &b), 1.0);
        assert_eq!(Distance::new(Metric::Cosine, k).eval(&a, &a), 0.0);
    }

    #[test]
    fn normalize_rejects_zero() {
        let mut z = [0.0f32; 3];
        assert!(!normalize(&mut z));
        let mut v = [3.0f32, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }
}
