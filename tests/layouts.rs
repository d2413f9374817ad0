//! `ShardAlloc` called through `GlobalAlloc` directly (this binary's global allocator is the
//! default one): every power-of-two alignment from 1 B to 4 MiB, then 32 MiB and 1 GiB, zeroed
//! memory, realloc chains, usable sizes and the alignment limit.

use std::alloc::{GlobalAlloc, Layout};

use shardalloc::ShardAlloc;

const MAX_TESTED_ALIGN: usize = 4 << 20;

fn alignments() -> impl Iterator<Item = usize> {
    (0..=MAX_TESTED_ALIGN.trailing_zeros()).map(|shift| 1usize << shift)
}

/// Sizes around the alignment and a few small and odd ones.
fn sizes_for(align: usize) -> Vec<usize> {
    let mut sizes = vec![1, 7, 8, 24, 100, align, align + 1, 3 * align];
    if align > 1 {
        sizes.push(align - 1);
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// A byte pattern that differs by position and by allocation, so misplaced copies show.
fn pattern(seed: usize, i: usize) -> u8 {
    (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(7)) % 251) as u8
}

unsafe fn fill(p: *mut u8, len: usize, seed: usize) {
    for i in 0..len {
        *p.add(i) = pattern(seed, i);
    }
}

unsafe fn check(p: *const u8, len: usize, seed: usize) {
    for i in 0..len {
        let got = *p.add(i);
        assert_eq!(
            got,
            pattern(seed, i),
            "byte {i} of {len} (seed {seed}) at {p:p}"
        );
    }
}

#[test]
fn every_alignment_up_to_4_mib() {
    for align in alignments() {
        // Several live at once, so they are not all the same recycled block.
        let mut live = Vec::new();
        for (seed, size) in sizes_for(align).into_iter().enumerate() {
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = unsafe { ShardAlloc.alloc(layout) };
            assert!(!p.is_null(), "alloc({size}, align {align}) returned null");
            assert_eq!(
                p as usize % align,
                0,
                "alloc({size}, align {align}) = {p:p}"
            );
            assert!(
                shardalloc::is_in_heap(p),
                "{p:p} not in shardalloc's memory"
            );
            assert!(unsafe { ShardAlloc::usable_size(p) } >= size);
            unsafe { fill(p, size, seed) };
            live.push((p, layout, seed));
        }
        for (p, layout, seed) in live {
            unsafe {
                check(p, layout.size(), seed);
                ShardAlloc.dealloc(p, layout);
            }
        }
    }
}

#[test]
fn every_alignment_zeroed() {
    for align in alignments() {
        for size in sizes_for(align) {
            let layout = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let p = ShardAlloc.alloc_zeroed(layout);
                assert!(
                    !p.is_null(),
                    "alloc_zeroed({size}, align {align}) returned null"
                );
                assert_eq!(p as usize % align, 0);
                let bytes = std::slice::from_raw_parts(p, size);
                let dirty = bytes.iter().position(|&b| b != 0);
                assert!(
                    dirty.is_none(),
                    "alloc_zeroed({size}, align {align}) = {p:p}: byte {dirty:?} is not zero"
                );
                ShardAlloc.dealloc(p, layout);
            }
        }
    }
}

#[test]
fn zeroed_memory_is_zero_after_reuse() {
    // Dirty a batch of blocks, free them, then ask for zeroed blocks of the same layouts, which
    // are likely to be the same memory again.
    for &(size, align) in &[
        (16, 8),
        (48, 16),
        (256, 64),
        (1000, 8),
        (5000, 4096),
        (70_000, 8),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        unsafe {
            let dirty: Vec<*mut u8> = (0..64).map(|_| ShardAlloc.alloc(layout)).collect();
            for &p in &dirty {
                assert!(!p.is_null());
                p.write_bytes(0xA5, size);
            }
            for &p in &dirty {
                ShardAlloc.dealloc(p, layout);
            }
            let clean: Vec<*mut u8> = (0..64).map(|_| ShardAlloc.alloc_zeroed(layout)).collect();
            for &p in &clean {
                assert!(!p.is_null());
                let bytes = std::slice::from_raw_parts(p, size);
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "reused block of {size} not zeroed"
                );
            }
            for &p in &clean {
                ShardAlloc.dealloc(p, layout);
            }
        }
    }
}

#[test]
fn realloc_grow_and_shrink_keeps_content() {
    for &align in &[1usize, 8, 16, 64, 4096, 1 << 16] {
        let mut size = 1usize;
        let mut layout = Layout::from_size_align(size, align).unwrap();
        let mut p = unsafe { ShardAlloc.alloc(layout) };
        assert!(!p.is_null());
        unsafe { fill(p, size, 0) };

        // Grow through every size range (small, medium, large, huge) with uneven steps.
        while size < (4 << 20) {
            let new_size = size * 2 + 13;
            p = unsafe { ShardAlloc.realloc(p, layout, new_size) };
            assert!(!p.is_null(), "realloc to {new_size} (align {align}) failed");
            assert_eq!(
                p as usize % align,
                0,
                "realloc {size} -> {new_size} lost alignment {align}: {p:p}"
            );
            unsafe {
                check(p, size, 0);
                fill(p, new_size, 0);
            }
            size = new_size;
            layout = Layout::from_size_align(size, align).unwrap();
        }

        // Shrink back down, keeping the prefix.
        while size > 1 {
            let new_size = size / 3;
            let new_size = new_size.max(1);
            p = unsafe { ShardAlloc.realloc(p, layout, new_size) };
            assert!(
                !p.is_null(),
                "realloc down to {new_size} (align {align}) failed"
            );
            assert_eq!(
                p as usize % align,
                0,
                "realloc {size} -> {new_size} lost alignment {align}: {p:p}"
            );
            unsafe { check(p, new_size, 0) };
            size = new_size;
            layout = Layout::from_size_align(size, align).unwrap();
        }
        unsafe { ShardAlloc.dealloc(p, layout) };
    }
}

#[test]
fn usable_size_covers_the_request() {
    for size in (1..=4096)
        .step_by(7)
        .chain([10_000, 100_000, 1 << 20, 5 << 20])
    {
        let layout = Layout::from_size_align(size, 8).unwrap();
        unsafe {
            let p = ShardAlloc.alloc(layout);
            assert!(!p.is_null());
            let usable = ShardAlloc::usable_size(p);
            assert!(usable >= size, "usable {usable} < requested {size}");
            assert!(ShardAlloc::good_size(size) >= size);
            // All of the usable size may be written.
            p.write_bytes(0x5A, usable);
            ShardAlloc.dealloc(p, layout);
        }
    }
    assert_eq!(unsafe { ShardAlloc::usable_size(std::ptr::null()) }, 0);
}

#[test]
fn alignment_above_the_maximum_fails_cleanly() {
    let layout = Layout::from_size_align(64, shardalloc::ALIGNMENT_MAX * 2).unwrap();
    let p = unsafe { ShardAlloc.alloc(layout) };
    assert!(
        p.is_null(),
        "alignment above ALIGNMENT_MAX must fail, got {p:p}"
    );
}

/// Alignments of 32 MiB and more get a mapping of their own: alloc, alloc_zeroed, realloc
/// (keeping the alignment, growing and shrinking) and dealloc, with small sizes.
#[test]
fn alignments_of_32_mib_and_1_gib() {
    for align in [32usize << 20, 1 << 30] {
        for size in [1usize, 16, 4096, 1 << 20] {
            let layout = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let p = ShardAlloc.alloc(layout);
                assert!(!p.is_null(), "alloc({size}, align {align}) returned null");
                assert_eq!(
                    p as usize % align,
                    0,
                    "alloc({size}, align {align}) = {p:p}"
                );
                let usable = ShardAlloc::usable_size(p);
                assert!(usable >= size, "usable {usable} < {size}");
                p.write_bytes(0xA5, usable);
                fill(p, size, size);

                let q = ShardAlloc.realloc(p, layout, 3 * size + 100);
                assert!(!q.is_null(), "realloc of ({size}, align {align}) failed");
                assert_eq!(
                    q as usize % align,
                    0,
                    "realloc lost alignment {align}: {q:p}"
                );
                check(q, size, size);
                let grown = Layout::from_size_align(3 * size + 100, align).unwrap();
                let r = ShardAlloc.realloc(q, grown, size.div_ceil(2));
                assert!(!r.is_null());
                assert_eq!(r as usize % align, 0);
                check(r, size.div_ceil(2), size);
                ShardAlloc.dealloc(r, Layout::from_size_align(size.div_ceil(2), align).unwrap());

                let z = ShardAlloc.alloc_zeroed(layout);
                assert!(!z.is_null());
                assert_eq!(z as usize % align, 0);
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                ShardAlloc.dealloc(z, layout);
            }
        }
    }
}

#[test]
fn version_matches_the_header() {
    assert_eq!(shardalloc::version(), shardalloc::ffi::SHARDALLOC_VERSION);
}
