//! x86-64 kernels: AVX2+FMA (with F16C) and AVX-512F.
//!
//! The two instruction sets differ only in register width and in the names of the
//! intrinsics, so one macro writes each set, and every kernel is the same loop
//! (`simd_sum`) around its own step. Macros rather than generic functions because the
//! intrinsics of each set only inline into functions compiled with that set's
//! `target_feature`. Beside them, where the CPU has AVX-512 VNNI, an integer kernel for
//! SQ8 dot products (`with_vnni`).

use std::arch::x86_64::*;

use super::{BYTE_PART, ByteDot, Kernels, bf16, f16, rabitq};

/// The loop every kernel runs: `step(acc, i)` adds the partial results of the `lanes`
/// elements at `i` to a vector accumulator, four accumulators taking turns over
/// `4 × lanes` elements per round, then single steps into the first, then `tail(j)` for
/// each remaining element. Four, not two: a graph's neighbour selection compares one
/// distance at a time and branches on each, so a kernel's latency (its longest chain of
/// dependent multiply-adds: 6 at 384-d with AVX-512, where two accumulators made it 12)
/// is what that loop waits for.
macro_rules! simd_sum {
    ($n:expr, $lanes:literal, $zero:ident, $add:ident, $hsum:ident,
     |$acc:ident, $i:ident| $step:expr, |$j:ident| $tail:expr) => {{
        let n = $n;
        let mut accs = [$zero(), $zero(), $zero(), $zero()];
        let mut at = 0;
        while at + 4 * $lanes <= n {
            for (k, acc) in accs.iter_mut().enumerate() {
                *acc = {
                    let ($acc, $i) = (*acc, at + k * $lanes);
                    $step
                };
            }
            at += 4 * $lanes;
        }
        while at + $lanes <= n {
            accs[0] = {
                let ($acc, $i) = (accs[0], at);
                $step
            };
            at += $lanes;
        }
        let mut sum = $hsum($add($add(accs[0], accs[1]), $add(accs[2], accs[3])));
        for $j in at..n {
            sum += $tail;
        }
        sum
    }};
}

/// Defines, for one instruction set, the squared-L2 and dot kernels against rows of
/// `$elem` as safe functions `$l2sq` and `$dot`: `$loadb` loads `lanes` of them as f32
/// (the f32 load itself, or a widening one), `$widen` converts one for the tail. Only
/// sound to hand out after the set's features were detected (see `kernel_set`).
macro_rules! row_kernels {
    ($l2sq:ident, $dot:ident, $elem:ty, $loadb:ident, $widen:path, $feature:literal,
     $lanes:literal, $zero:ident, $load:ident, $sub:ident, $fmadd:ident, $add:ident,
     $hsum:ident) => {
        fn $l2sq(a: &[f32], b: &[$elem]) -> f32 {
            #[target_feature(enable = $feature)]
            fn kernel(a: &[f32], b: &[$elem]) -> f32 {
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                simd_sum!(
                    a.len().min(b.len()),
                    $lanes,
                    $zero,
                    $add,
                    $hsum,
                    |acc, i| {
                        // SAFETY: `i + lanes <= n` (see `kernel_set`), in both slices.
                        let d = unsafe { $sub($load(pa.add(i)), $loadb(pb.add(i))) };
                        $fmadd(d, d, acc)
                    },
                    |j| (a[j] - $widen(b[j])) * (a[j] - $widen(b[j]))
                )
            }
            // SAFETY: only reachable after the set's features were detected.
            unsafe { kernel(a, b) }
        }

        fn $dot(a: &[f32], b: &[$elem]) -> f32 {
            #[target_feature(enable = $feature)]
            fn kernel(a: &[f32], b: &[$elem]) -> f32 {
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                simd_sum!(
                    a.len().min(b.len()),
                    $lanes,
                    $zero,
                    $add,
                    $hsum,
                    // SAFETY: `i + lanes <= n` (see `kernel_set`), in both slices.
                    |acc, i| unsafe { $fmadd($load(pa.add(i)), $loadb(pb.add(i)), acc) },
                    |j| a[j] * $widen(b[j])
                )
            }
            // SAFETY: only reachable after the set's features were detected.
            unsafe { kernel(a, b) }
        }
    };
}

/// Defines, for one instruction set, the kernels as `#[target_feature]` functions and
/// a safe constructor `$set() -> Kernels` handing them out as safe function pointers.
macro_rules! kernel_set {
    ($set:ident, $isa:literal, $feature:literal, $lanes:literal, $zero:ident, $load:ident,
     $widen:ident, $half:ident, $brain:ident, $sub:ident, $fmadd:ident, $fnmadd:ident,
     $add:ident, $hsum:ident) => {
        /// The kernel set. Only sound to call on a CPU with the set's features: callers
        /// (`Kernels::detect`, `Kernels::available`) check them at runtime first.
        pub fn $set() -> Kernels {
            // In every step below, the loads read `lanes` elements at `i`, and `simd_sum`
            // calls a step only with `i + lanes <= n`, `n` the length of the shortest
            // slice: every load lies inside its slice. Unaligned loads, as queries come
            // from arbitrary user memory.

            row_kernels!(
                l2sq,
                dot,
                f32,
                $load,
                std::convert::identity,
                $feature,
                $lanes,
                $zero,
                $load,
                $sub,
                $fmadd,
                $add,
                $hsum
            );
            row_kernels!(
                l2sq_f16,
                dot_f16,
                f16,
                $half,
                f16::to_f32,
                $feature,
                $lanes,
                $zero,
                $load,
                $sub,
                $fmadd,
                $add,
                $hsum
            );
            row_kernels!(
                l2sq_bf16,
                dot_bf16,
                bf16,
                $brain,
                bf16::to_f32,
                $feature,
                $lanes,
                $zero,
                $load,
                $sub,
                $fmadd,
                $add,
                $hsum
            );

            #[target_feature(enable = $feature)]
            fn l2sq_u8_impl(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
                let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_ptr());
                simd_sum!(
                    a.len().min(b.len()).min(c.len()),
                    $lanes,
                    $zero,
                    $add,
                    $hsum,
                    |acc, i| {
                        // SAFETY: `i + lanes <= n` (see above), in all three slices.
                        let d = unsafe {
                            $fnmadd($load(pb.add(i)), $widen(pc.add(i)), $load(pa.add(i)))
                        };
                        $fmadd(d, d, acc)
                    },
                    |j| (a[j] - b[j] * c[j] as f32) * (a[j] - b[j] * c[j] as f32)
                )
            }

            #[target_feature(enable = $feature)]
            fn dot_u8_impl(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
                let (pa, pc) = (a.as_ptr(), c.as_ptr());
                simd_sum!(
                    a.len().min(c.len()),
                    $lanes,
                    $zero,
                    $add,
                    $hsum,
                    // SAFETY: `i + lanes <= n` (see above), in both slices.
                    |acc, i| unsafe { $fmadd($load(pa.add(i)), $widen(pc.add(i)), acc) },
                    |j| a[j] * c[j] as f32
                )
            }

            // The safe wrappers are only handed out after the runtime feature check (see
            // the constructor's doc), which is what makes calling the `#[target_feature]`
            // functions sound.
            fn l2sq_u8(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
                // SAFETY: only reachable after the set's features were detected.
                unsafe { l2sq_u8_impl(a, b, c) }
            }
            fn dot_u8(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
                // SAFETY: only reachable after the set's features were detected.
                unsafe { dot_u8_impl(a, b, c) }
            }

            Kernels {
                l2sq,
                dot,
                l2sq_u8,
                dot_u8,
                dot_u8_i8: None,
                l2sq_f16,
                dot_f16,
                l2sq_bf16,
                dot_bf16,
                // AVX2 in both sets (the AVX-512 one requires it); no AVX-512 form yet.
                planes: Some(planes_dot),
                isa: $isa,
            }
        }
    };
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

/// Eight f16 values from `p` widened to f32.
///
/// # Safety
/// `p` must point at 8 readable f16 values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half8(p: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes; loadu_si128 reads exactly 16.
    let halves = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_cvtph_ps(halves)
}

/// Sixteen f16 values from `p` widened to f32.
///
/// # Safety
/// `p` must point at 16 readable f16 values.
#[target_feature(enable = "avx512f")]
unsafe fn half16(p: *const f16) -> __m512 {
    // SAFETY: the caller guarantees 32 readable bytes; loadu_si256 reads exactly 32.
    let halves = unsafe { _mm256_loadu_si256(p as *const __m256i) };
    _mm512_cvtph_ps(halves)
}

/// Eight bf16 values from `p` widened to f32: each one's bits shifted into the top half
/// of a 32-bit lane.
///
/// # Safety
/// `p` must point at 8 readable bf16 values.
#[target_feature(enable = "avx2,fma")]
unsafe fn brain8(p: *const bf16) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes; loadu_si128 reads exactly 16.
    let halves = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(halves)))
}

/// Sixteen bf16 values from `p` widened to f32 (as `brain8`).
///
/// # Safety
/// `p` must point at 16 readable bf16 values.
#[target_feature(enable = "avx512f")]
unsafe fn brain16(p: *const bf16) -> __m512 {
    // SAFETY: the caller guarantees 32 readable bytes; loadu_si256 reads exactly 32.
    let halves = unsafe { _mm256_loadu_si256(p as *const __m256i) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(halves)))
}

/// `Σ u_i q_i` over the levels `u_i` of `bits` bit planes (see `PlaneKernel`). Only
/// handed out in kernel sets that require AVX2.
fn planes_dot(q: &[i8], planes: &[u8], bits: usize) -> i64 {
    // The kernel reads the planes 4 bytes at a time and 32 bytes of each query part per
    // 4 plane bytes: all in bounds once these hold.
    let bytes = planes.len() / bits.max(1);
    assert!(
        (1..=rabitq::MAX_BITS as usize).contains(&bits)
            && planes.len() == bits * bytes
            && bytes.is_multiple_of(4)
            && q.len() == 8 * bytes * rabitq::query_parts(bits as u8)
    );
    // SAFETY: only reachable after AVX2 was detected (kernel sets that include it);
    // bounds as asserted above.
    unsafe {
        match bits {
            1 => planes_dot_avx2::<1>(q, planes),
            2 => planes_dot_avx2::<2>(q, planes),
            3 => planes_dot_avx2::<3>(q, planes),
            4 => planes_dot_avx2::<4>(q, planes),
            5 => planes_dot_avx2::<5>(q, planes),
            6 => planes_dot_avx2::<6>(q, planes),
            7 => planes_dot_avx2::<7>(q, planes),
            _ => planes_dot_avx2::<8>(q, planes),
        }
    }
}

/// `planes_dot` for `B` planes, 32 coordinates a step: each plane's 4 bytes spread to
/// one byte per coordinate (all ones where its bit is set), the levels assembled from the
/// top plane down (`u = 2u + bit`, as bytes), multiplied by each query part's bytes and
/// summed in pairs (`maddubs`, u8 × i8 into i16: the parts' ranges keep a pair within
/// it), then in fours into i32 lanes.
///
/// # Safety
/// AVX2 must be available; `planes` `B` planes of `bytes` bytes, `bytes` a multiple of 4,
/// and `q` `query_parts(B)` parts of `8 · bytes`.
#[target_feature(enable = "avx2")]
unsafe fn planes_dot_avx2<const B: usize>(q: &[i8], planes: &[u8]) -> i64 {
    let bytes = planes.len() / B;
    let two_parts = rabitq::query_parts(B as u8) == 2;
    // Byte `p` of a 128-bit lane takes plane byte `p / 8` of that lane's pair (the high
    // lane's indices 2 and 3 read its own copy of the broadcast word), then bit `p % 8`.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let ones = _mm256_set1_epi16(1);
    let (mut coarse, mut fine) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for k in (0..bytes).step_by(4) {
        let mut levels = _mm256_setzero_si256();
        for b in (0..B).rev() {
            // SAFETY: `b · bytes + k + 4 <= B · bytes`, within `planes` (caller).
            let word =
                unsafe { (planes.as_ptr().add(b * bytes + k) as *const i32).read_unaligned() };
            let spread =
                _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(word), spread), bit);
            let set = _mm256_cmpeq_epi8(spread, bit);
            levels = _mm256_sub_epi8(_mm256_add_epi8(levels, levels), set);
        }
        // SAFETY: `8k + 32 <= 8 · bytes` as `k + 4 <= bytes`: inside the first part, and
        // inside the second (at `8 · bytes`) when there is one (caller).
        let query = unsafe { _mm256_loadu_si256(q.as_ptr().add(8 * k) as *const __m256i) };
        let pairs = _mm256_maddubs_epi16(levels, query);
        coarse = _mm256_add_epi32(coarse, _mm256_madd_epi16(pairs, ones));
        if two_parts {
            // SAFETY: as above.
            let query =
                unsafe { _mm256_loadu_si256(q.as_ptr().add(8 * (bytes + k)) as *const __m256i) };
            let pairs = _mm256_maddubs_epi16(levels, query);
            fine = _mm256_add_epi32(fine, _mm256_madd_epi16(pairs, ones));
        }
    }
    let coarse = hsum_epi32(coarse) as i64;
    match two_parts {
        true => coarse * rabitq::FINE as i64 + hsum_epi32(fine) as i64,
        false => coarse,
    }
}

#[target_feature(enable = "avx2")]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let hi = _mm256_extractf128_ps(v, 1);
    let lo = _mm256_castps256_ps128(v);
    let s = _mm_add_ps(hi, lo);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

kernel_set!(
    avx2_kernels,
    "avx2+fma",
    "avx2,fma,f16c",
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    widen8,
    half8,
    brain8,
    _mm256_sub_ps,
    _mm256_fmadd_ps,
    _mm256_fnmadd_ps,
    _mm256_add_ps,
    hsum256
);

kernel_set!(
    avx512_kernels,
    "avx512f",
    "avx512f,avx2,fma,f16c",
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    widen16,
    half16,
    brain16,
    _mm512_sub_ps,
    _mm512_fmadd_ps,
    _mm512_fnmadd_ps,
    _mm512_add_ps,
    _mm512_reduce_add_ps
);

/// `kernels` with the AVX-512 VNNI integer SQ8 kernel, where this CPU has it: a 64-byte
/// step of a code takes one `vpdpbusd` per query part, where the float kernel widens
/// each 16 codes twice and converts them before its multiply-add (on the Debian set's
/// walk, a quarter of the query time was that kernel).
pub fn with_vnni(kernels: Kernels) -> Kernels {
    let vnni = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni");
    match vnni {
        true => Kernels {
            dot_u8_i8: Some(ByteDot {
                round: round_parts,
                dot: dot_u8_vnni,
            }),
            isa: "avx512f+vnni",
            ..kernels
        },
        false => kernels,
    }
}

/// Rounds a query into the parts of an integer dot (see `ByteDot::round`). Only handed
/// out after AVX-512 F and BW were detected (`with_vnni`).
fn round_parts(a: &[f32], out: &mut [i8]) -> f32 {
    assert_eq!(out.len(), 2 * a.len());
    let (h, l) = out.split_at_mut(a.len());
    // SAFETY: only reachable after the features were detected; `h` and `l` as long as `a`.
    unsafe { round_parts_impl(a, h, l) }
}

// The shifts of `round_parts_impl` divide and multiply by FINE; the parts are i8.
const _: () = assert!(rabitq::FINE == 1 << 7 && BYTE_PART <= 127);

/// `round_parts`, 16 components a step (the last masked): `r = round(a / step)` within
/// `±FINE · BYTE_PART`, `h = floor((r + FINE / 2) / FINE)` and `l = r − FINE · h`, so `h`
/// within `±BYTE_PART` and `l` within `[−FINE / 2, FINE / 2)`.
///
/// # Safety
/// AVX-512 F and BW must be available; `h` and `l` as long as `a`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn round_parts_impl(a: &[f32], h: &mut [i8], l: &mut [i8]) -> f32 {
    let n = a.len();
    let mask = |at: usize| -> __mmask16 {
        match n - at {
            16.. => !0,
            left => (1u16 << left) - 1,
        }
    };
    let mut top = _mm512_setzero_ps();
    for at in (0..n).step_by(16) {
        // SAFETY: the mask covers only components before `n`.
        let v = unsafe { _mm512_maskz_loadu_ps(mask(at), a.as_ptr().add(at)) };
        top = _mm512_max_ps(top, _mm512_abs_ps(v));
    }
    let top = _mm512_reduce_max_ps(top);
    // Below this, `1 / step` would overflow: such a query's dot products are lost in
    // the constant term anyway, as on the float path.
    let smallest = (rabitq::FINE * BYTE_PART) as f32 * f32::MIN_POSITIVE;
    if !(top >= smallest && top.is_finite()) {
        h.fill(0);
        l.fill(0);
        return 1.0;
    }
    let step = top / (rabitq::FINE * BYTE_PART) as f32;
    let inverse = _mm512_set1_ps(1.0 / step);
    let half = _mm512_set1_epi32(rabitq::FINE / 2);
    for at in (0..n).step_by(16) {
        let m = mask(at);
        // SAFETY: the mask covers only components before `n` in `a`, `h` and `l`.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, a.as_ptr().add(at));
            // Rounds to nearest whatever the MXCSR mode.
            let r = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(v, inverse),
            );
            let coarse = _mm512_srai_epi32::<7>(_mm512_add_epi32(r, half));
            let fine = _mm512_sub_epi32(r, _mm512_slli_epi32::<7>(coarse));
            _mm512_mask_cvtepi32_storeu_epi8(h.as_mut_ptr().add(at), m, coarse);
            _mm512_mask_cvtepi32_storeu_epi8(l.as_mut_ptr().add(at), m, fine);
        }
    }
    step
}

/// `Σ c_i·(FINE·h_i + l_i)` (see `ByteKernel`). Only handed out after AVX-512 VNNI and
/// BW were detected (`with_vnni`).
fn dot_u8_vnni(q: &[i8], c: &[u8]) -> f32 {
    assert_eq!(q.len(), 2 * c.len());
    let (coarse, fine) = q.split_at(c.len());
    // SAFETY: only reachable after the features were detected; the three slices have
    // the same length.
    unsafe { dot_u8_vnni_impl(coarse, fine, c) }
}

/// `dot_u8_vnni`: 64 codes a step, in two accumulators per part, the last step masked
/// (masked-out bytes are neither read nor faulted on). Each i32 lane sums at most
/// `MAX_DIM / 16` products of `255 · BYTE_PART`: no overflow. The parts' lanes are
/// combined in f32 (`FINE · h + l` could overflow i32 at large dimensions), then summed.
///
/// # Safety
/// AVX-512 F, BW and VNNI must be available; `h`, `l` and `c` of equal length.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_u8_vnni_impl(h: &[i8], l: &[i8], c: &[u8]) -> f32 {
    let n = c.len();
    let (ph, pl, pc) = (h.as_ptr(), l.as_ptr(), c.as_ptr());
    let (mut h0, mut h1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let (mut l0, mut l1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut at = 0;
    while at + 128 <= n {
        // SAFETY: `at + 128 <= n`: both 64-byte loads of each slice are inside it.
        unsafe {
            let c0 = _mm512_loadu_si512(pc.add(at).cast());
            let c1 = _mm512_loadu_si512(pc.add(at + 64).cast());
            h0 = _mm512_dpbusd_epi32(h0, c0, _mm512_loadu_si512(ph.add(at).cast()));
            l0 = _mm512_dpbusd_epi32(l0, c0, _mm512_loadu_si512(pl.add(at).cast()));
            h1 = _mm512_dpbusd_epi32(h1, c1, _mm512_loadu_si512(ph.add(at + 64).cast()));
            l1 = _mm512_dpbusd_epi32(l1, c1, _mm512_loadu_si512(pl.add(at + 64).cast()));
        }
        at += 128;
    }
    while at < n {
        let mask: __mmask64 = match n - at {
            64.. => !0,
            left => (1u64 << left) - 1,
        };
        // SAFETY: the mask covers only bytes before `n` in each slice; masked loads
        // neither read nor fault on the rest.
        unsafe {
            let c0 = _mm512_maskz_loadu_epi8(mask, pc.add(at).cast());
            h0 = _mm512_dpbusd_epi32(h0, c0, _mm512_maskz_loadu_epi8(mask, ph.add(at)));
            l0 = _mm512_dpbusd_epi32(l0, c0, _mm512_maskz_loadu_epi8(mask, pl.add(at)));
        }
        at += 64;
    }
    let coarse = _mm512_cvtepi32_ps(_mm512_add_epi32(h0, h1));
    let fine = _mm512_cvtepi32_ps(_mm512_add_epi32(l0, l1));
    let fine_steps = _mm512_set1_ps(rabitq::FINE as f32);
    _mm512_reduce_add_ps(_mm512_fmadd_ps(coarse, fine_steps, fine))
}
