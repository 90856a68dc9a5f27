//! The process allocator: the system allocator, except that very large requests are served by
//! `mmap(MAP_NORESERVE)`.
//!
//! Why: the `kafka-protocol` decoders pre-allocate arrays with `Vec::with_capacity(n)` where `n`
//! comes straight off the wire (upstream: kafka-protocol-rs PRs #152/#161/#200, open). Eight bytes
//! from any client can ask for tens of GiB; the system allocator refuses, and a refused allocation
//! aborts the process. A `MAP_NORESERVE` mapping only reserves address space: the bogus capacity
//! is never touched, decoding then fails on the short buffer, and the mapping is returned. A
//! legitimate large buffer behaves as it would under the kernel's usual overcommit. Drop this
//! once the codec bounds its pre-allocation.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests at least this large go to `mmap`. Far above any buffer the broker allocates on
/// purpose in its hot path (batches and frames are bounded by `socket.request.max.bytes`).
const LARGE_ALLOCATION_BYTES: usize = 256 << 20;
/// mmap returns page-aligned memory; larger alignments stay with the system allocator.
const PAGE_BYTES: usize = 4096;

#[derive(Debug, Default)]
pub struct Allocator;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; failure
    // is reported as MAP_FAILED, which becomes the null "allocation failed" answer.
    let pointer = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if pointer == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        pointer.cast()
    }
}

// SAFETY: every pointer handed out is either the system allocator's (small or over-aligned
// layouts) or a fresh mapping of at least `layout.size()` bytes, page aligned, released with the
// same routing decision because `is_large` depends only on the layout, which Rust passes back
// unchanged to `dealloc`.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Anonymous mappings are zero-filled by the kernel: no memset that would touch (and
            // so commit) every page.
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `pointer` came from `map(layout.size())` (same routing), unmapped once.
            unsafe { libc::munmap(pointer.cast(), layout.size()) };
            return;
        }
        // SAFETY: `pointer` came from `System.alloc` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bogus_huge_capacity_is_reserved_not_committed() {
        // 64 GiB of capacity: far beyond this machine's memory, harmless because untouched.
        let mut huge: Vec<u64> = Vec::with_capacity(8 << 30);
        huge.push(7);
        assert_eq!(huge[0], 7);
        let small: Vec<u8> = vec![1; 1000];
        assert_eq!(small.iter().map(|b| *b as usize).sum::<usize>(), 1000);
    }
}
