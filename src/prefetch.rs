//! Software prefetch: a hint that changes speed, never results.

/// Asks the CPU to start loading the cache lines covering `len` bytes at `p`.
#[inline(always)]
pub fn lines(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        // `wrapping_add` avoids claiming the pointer is in bounds: a prefetch may point
        // anywhere.
        line(p.wrapping_add(off));
        off += 64;
    }
}

/// Prefetches the cache line holding `p` into L1 (a no-op where no instruction is wired).
#[inline(always)]
fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and has no architectural effect, whatever the
    // address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM is a hint: it never faults and writes no register or memory, whatever
    // the address.
    unsafe {
        std::arch::asm!(
            "prfm pldl1keep, [{0}]",
            in(reg) p,
            options(nostack, preserves_flags, readonly)
        )
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}
