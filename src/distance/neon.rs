//! aarch64 NEON kernels.

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
