//! Software prefetch: a hint that changes speed, never results.

/// Asks the CPU to start loading the cache lines covering `len` bytes at `p`.
#[inline(always)]
pub fn lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut off = 0;
        while off < len {
            // SAFETY: prefetch never faults and has no architectural effect, whatever the
            // address; `wrapping_add` avoids claiming the pointer is in bounds.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(off) as *const i8,
                )
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, len);
    }
}
