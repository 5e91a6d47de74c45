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
    #[cfg(target_arch = "aarch64")]
    {
        let mut off = 0;
        while off < len {
            // SAFETY: PRFM is a hint: it never faults and writes no register or memory,
            // whatever the address (`wrapping_add`, as above).
            unsafe {
                std::arch::asm!(
                    "prfm pldl1keep, [{0}]",
                    in(reg) p.wrapping_add(off),
                    options(nostack, preserves_flags, readonly)
                )
            };
            off += 64;
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (p, len);
    }
}
