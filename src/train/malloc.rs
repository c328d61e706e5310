//! glibc's allocator set for a training process. By default it serves large allocations
//! with an `mmap` of their own and gives freed memory at the top of its heap back to the
//! kernel, so every training step maps, page-faults and zeroes its activations and
//! gradients afresh (over 2 million page faults in 24 steps of `bench-epoch`, a tenth of
//! the time on two cores). Kept, freed memory serves the next step instead; the process keeps
//! its peak footprint.

/// Serves every allocation from the heap and never trims it (Linux with glibc; elsewhere
/// nothing). Call once at start-up, before other threads exist.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc malloc parameters; both values are valid for them.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
