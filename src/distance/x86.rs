//! x86-64 kernels: AVX2+FMA and AVX-512F.
//!
//! The two instruction sets differ only in register width and in the names of the
//! intrinsics, so one macro writes each set: two accumulators over `2 × lanes` elements
//! per step, one more step of `lanes`, then a scalar tail (dimensions are usually
//! multiples of the width, so the tail rarely runs). A macro rather than a generic
//! function because the intrinsics of each set only inline into functions compiled with
//! that set's `target_feature`.

use std::arch::x86_64::*;

use super::Kernels;

/// Defines, for one instruction set, the four kernels as `#[target_feature]` functions and
/// a safe constructor `$set() -> Kernels` handing them out as safe function pointers.
macro_rules! kernel_set {
    ($set:ident, $isa:literal, $feature:literal, $lanes:literal, $zero:ident, $load:ident,
     $widen:ident, $sub:ident, $fmadd:ident, $fnmadd:ident, $add:ident, $hsum:ident) => {
        /// The kernel set. Only sound to call on a CPU with the set's features: callers
        /// (`Kernels::detect`, `Kernels::available`) check them at runtime first.
        pub fn $set() -> Kernels {
            #[target_feature(enable = $feature)]
            fn l2sq_impl(a: &[f32], b: &[f32]) -> f32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc0 = $zero();
                let mut acc1 = $zero();
                let mut i = 0;
                // SAFETY (all loads below): each reads `lanes` floats at `i` or
                // `i + lanes`, the loop conditions keeping the last one below `n`, inside
                // both slices. Unaligned loads: queries come from arbitrary user memory.
                unsafe {
                    while i + 2 * $lanes <= n {
                        let d0 = $sub($load(pa.add(i)), $load(pb.add(i)));
                        let d1 = $sub($load(pa.add(i + $lanes)), $load(pb.add(i + $lanes)));
                        acc0 = $fmadd(d0, d0, acc0);
                        acc1 = $fmadd(d1, d1, acc1);
                        i += 2 * $lanes;
                    }
                    if i + $lanes <= n {
                        let d0 = $sub($load(pa.add(i)), $load(pb.add(i)));
                        acc0 = $fmadd(d0, d0, acc0);
                        i += $lanes;
                    }
                }
                let mut sum = $hsum($add(acc0, acc1));
                for j in i..n {
                    let d = a[j] - b[j];
                    sum += d * d;
                }
                sum
            }

            #[target_feature(enable = $feature)]
            fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc0 = $zero();
                let mut acc1 = $zero();
                let mut i = 0;
                // SAFETY (all loads below): as in `l2sq_impl`, within both slices.
                unsafe {
                    while i + 2 * $lanes <= n {
                        acc0 = $fmadd($load(pa.add(i)), $load(pb.add(i)), acc0);
                        acc1 = $fmadd($load(pa.add(i + $lanes)), $load(pb.add(i + $lanes)), acc1);
                        i += 2 * $lanes;
                    }
                    if i + $lanes <= n {
                        acc0 = $fmadd($load(pa.add(i)), $load(pb.add(i)), acc0);
                        i += $lanes;
                    }
                }
                let mut sum = $hsum($add(acc0, acc1));
                for j in i..n {
                    sum += a[j] * b[j];
                }
                sum
            }

            #[target_feature(enable = $feature)]
            fn l2sq_u8_impl(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
                let n = a.len().min(b.len()).min(c.len());
                let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_ptr());
                let mut acc0 = $zero();
                let mut acc1 = $zero();
                let mut i = 0;
                // SAFETY (all loads below): as in `l2sq_impl`, within all three slices.
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
            fn dot_u8_impl(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
                let n = a.len().min(c.len());
                let (pa, pc) = (a.as_ptr(), c.as_ptr());
                let mut acc0 = $zero();
                let mut acc1 = $zero();
                let mut i = 0;
                // SAFETY (all loads below): as in `l2sq_impl`, within both slices.
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

            // The safe wrappers are only handed out after the runtime feature check (see
            // the constructor's doc), which is what makes calling the `#[target_feature]`
            // functions sound.
            fn l2sq(a: &[f32], b: &[f32]) -> f32 {
                // SAFETY: only reachable after the set's features were detected.
                unsafe { l2sq_impl(a, b) }
            }
            fn dot(a: &[f32], b: &[f32]) -> f32 {
                // SAFETY: only reachable after the set's features were detected.
                unsafe { dot_impl(a, b) }
            }
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
    "avx2,fma",
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    widen8,
    _mm256_sub_ps,
    _mm256_fmadd_ps,
    _mm256_fnmadd_ps,
    _mm256_add_ps,
    hsum256
);

kernel_set!(
    avx512_kernels,
    "avx512f",
    "avx512f",
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    widen16,
    _mm512_sub_ps,
    _mm512_fmadd_ps,
    _mm512_fnmadd_ps,
    _mm512_add_ps,
    _mm512_reduce_add_ps
);
