//! x86-64 kernels: AVX2+FMA (with F16C) and AVX-512F.
//!
//! The two instruction sets differ only in register width and in the names of the
//! intrinsics, so one macro writes each set, and every kernel is the same loop
//! (`simd_sum`) around its own step. Macros rather than generic functions because the
//! intrinsics of each set only inline into functions compiled with that set's
//! `target_feature`.

use std::arch::x86_64::*;

use super::{Kernels, bf16, f16};

/// The loop every kernel runs: `step(acc, i)` adds the partial results of the `lanes`
/// elements at `i` to a vector accumulator, two accumulators alternating over `2 × lanes`
/// elements per round (to hide the FMA latency), one more step of `lanes`, then
/// `tail(j)` for each remaining element.
macro_rules! simd_sum {
    ($n:expr, $lanes:literal, $zero:ident, $add:ident, $hsum:ident,
     |$acc:ident, $i:ident| $step:expr, |$j:ident| $tail:expr) => {{
        let n = $n;
        let mut acc0 = $zero();
        let mut acc1 = $zero();
        let mut at = 0;
        while at + 2 * $lanes <= n {
            acc0 = {
                let ($acc, $i) = (acc0, at);
                $step
            };
            acc1 = {
                let ($acc, $i) = (acc1, at + $lanes);
                $step
            };
            at += 2 * $lanes;
        }
        if at + $lanes <= n {
            acc0 = {
                let ($acc, $i) = (acc0, at);
                $step
            };
            at += $lanes;
        }
        let mut sum = $hsum($add(acc0, acc1));
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
                l2sq_f16,
                dot_f16,
                l2sq_bf16,
                dot_bf16,
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
