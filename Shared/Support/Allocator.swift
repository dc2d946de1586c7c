import CMalloc

/// Tells the C allocator to keep freed memory for reuse. A training step makes and drops the same large arrays
/// (activations, gradients) every time. glibc's malloc serves a block above 128 KB with a fresh mapping from the
/// kernel and unmaps it when freed, so each new array of that size costs a page fault per 4 KB page, and the kernel
/// zeroes every page: about 8% of a GPT training step here. With these two settings the blocks come from the heap
/// and freed memory stays there for the next step, so the memory the process holds is its peak working set.
/// (PyTorch users get the same by preloading jemalloc or tcmalloc.) Does nothing on other C libraries.
public func keepFreedMemoryForReuse() {
  #if os(Linux)
    _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)  // blocks up to 32 MB (glibc's maximum) from the heap
    _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)  // give heap memory back only when 1 GB of it is free
  #endif
}
