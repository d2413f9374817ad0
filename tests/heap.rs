//! `shardalloc::Heap`: the `Allocator` methods (sizes, alignments, zeroing, growing and
//! shrinking), collections built in a heap, dropping a heap frees its memory, `delete` keeps
//! blocks alive, and threads sharing one heap.
//!
//! The tests compare process-wide counters (`shardalloc::stats`), so they run one at a time
//! (`SERIAL`). The binary's global allocator stays the system allocator: only the heaps made
//! here allocate from shardalloc.

// rust-version (Cargo.toml) is the library's; tests may use newer std APIs.
#![allow(clippy::incompatible_msrv)]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use hashbrown::{DefaultHashBuilder, HashMap};
use shardalloc::{Heap, ShardAlloc, ALIGNMENT_MAX};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The byte at offset `i` of a block tagged `tag`.
fn pattern(tag: usize, i: usize) -> u8 {
    (tag.wrapping_mul(31) ^ i.wrapping_mul(7) ^ (i >> 8)) as u8
}

unsafe fn fill(p: NonNull<u8>, len: usize, tag: usize) {
    for i in 0..len {
        p.as_ptr().add(i).write(pattern(tag, i));
    }
}

unsafe fn check(p: NonNull<u8>, len: usize, tag: usize) {
    for i in 0..len {
        assert_eq!(
            *p.as_ptr().add(i),
            pattern(tag, i),
            "byte {i} of block {tag}"
        );
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Allocates `l` from `heap` and checks the block: aligned, as long as asked, owned by the heap.
fn take(heap: &Heap, l: Layout, zeroed: bool) -> NonNull<u8> {
    let block = if zeroed {
        heap.allocate_zeroed(l)
    } else {
        heap.allocate(l)
    }
    .unwrap_or_else(|_| panic!("{l:?} failed"));
    assert_eq!(block.len(), l.size(), "{l:?}");
    let p = block.cast::<u8>();
    assert_eq!(p.as_ptr() as usize % l.align(), 0, "{l:?} misaligned");
    if l.size() != 0 {
        assert!(heap.contains(p.as_ptr()), "{l:?} not in the heap");
        assert!(heap.contains(p.as_ptr().wrapping_add(l.size() - 1)));
    }
    p
}

const SIZES: &[usize] = &[
    0,
    1,
    8,
    24,
    100,
    1000,
    4 * KIB,
    60 * KIB,
    512 * KIB,
    3 * MIB,
    20 * MIB,
];
const ALIGNS: &[usize] = &[1, 8, 16, 64, 4 * KIB, 64 * KIB, 2 * MIB, 32 * MIB];

#[test]
fn allocate_every_size_and_alignment() {
    let _serial = serial();
    let heap = Heap::new();
    let mut live = std::vec::Vec::new();
    for (tag, &size) in SIZES.iter().enumerate() {
        for &align in ALIGNS {
            let l = layout(size, align);
            let p = take(&heap, l, false);
            // The whole block for small ones, its two ends for the rest.
            let n = size.min(4 * KIB);
            unsafe {
                fill(p, n, tag);
                if size > n {
                    p.as_ptr().add(size - 1).write(0x5A);
                }
            }
            live.push((p, l, tag, n));
        }
    }
    for (p, l, tag, n) in live {
        unsafe {
            check(p, n, tag);
            if l.size() > n {
                assert_eq!(*p.as_ptr().add(l.size() - 1), 0x5A);
            }
            (&heap).deallocate(p, l);
        }
    }
}

#[test]
fn alignment_beyond_the_maximum_is_an_error() {
    let _serial = serial();
    let heap = Heap::new();
    let l = layout(8, ALIGNMENT_MAX * 2);
    assert_eq!((&heap).allocate(l), Err(AllocError));
    assert_eq!((&heap).allocate_zeroed(l), Err(AllocError));
    // A failed grow leaves the block as it was.
    let small = layout(64, 8);
    let p = take(&heap, small, false);
    unsafe {
        fill(p, 64, 3);
        assert_eq!(
            (&heap).grow(p, small, layout(128, ALIGNMENT_MAX * 2)),
            Err(AllocError)
        );
        check(p, 64, 3);
        (&heap).deallocate(p, small);
    }
}

#[test]
fn allocate_zeroed_after_dirty_frees() {
    let _serial = serial();
    let heap = Heap::new();
    for &size in &[8, 100, 1000, 20 * KIB, 300 * KIB, 3 * MIB] {
        for &align in &[8, 64, 4 * KIB] {
            let l = layout(size, align);
            // Dirty blocks of the size class, freed, so the zeroed ones reuse them.
            let dirty: std::vec::Vec<_> = (0..4).map(|_| take(&heap, l, false)).collect();
            for &p in &dirty {
                unsafe { p.as_ptr().write_bytes(0xAB, size) };
            }
            for p in dirty {
                unsafe { (&heap).deallocate(p, l) };
            }
            let p = take(&heap, l, true);
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
            assert!(bytes.iter().all(|&b| b == 0), "{l:?} not zeroed");
            unsafe { (&heap).deallocate(p, l) };
        }
    }
}

#[test]
fn grow_keeps_contents_and_alignment() {
    let _serial = serial();
    let heap = Heap::new();
    // From tiny to huge, changing the alignment on the way (a block must move for that).
    let steps = [
        layout(0, 8),
        layout(5, 1),
        layout(24, 8),
        layout(200, 64),
        layout(3000, 8),
        layout(70 * KIB, 4 * KIB),
        layout(600 * KIB, 16),
        layout(5 * MIB, 64 * KIB),
        layout(20 * MIB, 8),
    ];
    let mut p = take(&heap, steps[0], false);
    for pair in steps.windows(2) {
        let (old, new) = (pair[0], pair[1]);
        unsafe {
            fill(p, old.size().min(8 * KIB), 1);
            let block = (&heap).grow(p, old, new).expect("grow");
            assert_eq!(block.len(), new.size());
            p = block.cast();
            assert_eq!(p.as_ptr() as usize % new.align(), 0, "{new:?} misaligned");
            assert!(heap.contains(p.as_ptr()));
            check(p, old.size().min(8 * KIB), 1);
            p.as_ptr().add(new.size() - 1).write(9);
        }
    }
    unsafe { (&heap).deallocate(p, steps[steps.len() - 1]) };
}

#[test]
fn grow_of_a_small_block_frees_the_old_one() {
    let _serial = serial();
    let heap = Heap::new();
    // Doubling as a Vec grows, to the largest size the sized free takes and one past it.
    let mut old = layout(8, 8);
    let mut p = take(&heap, old, false);
    while old.size() <= 8 * KIB {
        let new = layout(old.size() * 2, 8);
        unsafe {
            fill(p, old.size(), 3);
            p = (&heap).grow(p, old, new).expect("grow").cast();
            check(p, old.size(), 3);
            // SAFETY: only this thread uses `heap`.
            assert_eq!(
                heap.stats().blocks,
                1,
                "{old:?} -> {new:?} left the old block"
            );
        }
        old = new;
    }
    unsafe { (&heap).deallocate(p, old) };
    assert_eq!(unsafe { heap.stats() }.blocks, 0);
}

#[test]
fn small_blocks_of_every_small_alignment() {
    let _serial = serial();
    let heap = Heap::new();
    // Alignments up to 16 with sizes around them take the C library's plain calls where
    // those guarantee the alignment (16 bytes, 8 for sizes up to 8) and the aligned ones
    // elsewhere: many blocks of each, so that an 8-byte block handed out for a 16-byte
    // alignment is caught whichever way the page's blocks fall.
    for &align in &[1, 2, 4, 8, 16] {
        for size in 1..=40 {
            for zeroed in [false, true] {
                let l = layout(size, align);
                let blocks: std::vec::Vec<_> = (0..64).map(|_| take(&heap, l, zeroed)).collect();
                for p in blocks {
                    if zeroed {
                        let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                        assert!(bytes.iter().all(|&b| b == 0), "{l:?} not zeroed");
                    }
                    unsafe { p.as_ptr().write_bytes(0xEE, size) };
                    unsafe { (&heap).deallocate(p, l) };
                }
            }
        }
    }
}

#[test]
fn grow_of_a_small_block_with_a_large_alignment() {
    let _serial = serial();
    let heap = Heap::new();
    // A small size with an alignment past what the sized free takes: the old block must be
    // freed by a look-up, not by its size. Several blocks each, so that some lie past the
    // first slice of a medium page (64 KiB alignment: blocks of 64 KiB).
    for &(old, new) in &[
        (layout(64, 8 * KIB), layout(128, 8 * KIB)),
        (layout(64, 64 * KIB), layout(4 * KIB, 8)),
        (layout(100, 8), layout(100, 16)), // equal sizes
    ] {
        let blocks: std::vec::Vec<_> = (0..8).map(|_| take(&heap, old, false)).collect();
        let mut grown = std::vec::Vec::new();
        for (tag, p) in blocks.into_iter().enumerate() {
            unsafe {
                fill(p, old.size(), tag);
                let q = (&heap).grow(p, old, new).expect("grow").cast::<u8>();
                assert_eq!(q.as_ptr() as usize % new.align(), 0, "{new:?} misaligned");
                check(q, old.size(), tag);
                grown.push(q);
            }
        }
        // SAFETY: only this thread uses `heap`.
        assert_eq!(
            unsafe { heap.stats() }.blocks,
            8,
            "{old:?} -> {new:?} left old blocks"
        );
        for q in grown {
            unsafe { (&heap).deallocate(q, new) };
        }
    }
}

#[test]
fn grow_zeroed_zeroes_past_the_old_size() {
    let _serial = serial();
    let heap = Heap::new();
    for &(old_size, new_size, align) in &[
        (100, 110, 8),    // in place: within the block's slack
        (100, 4000, 8),   // moves
        (1000, 1024, 64), // in place
        (40 * KIB, 200 * KIB, 16),
        (64, 256, 4 * KIB), // a larger alignment
        (0, 64, 8),         // from a zero-sized block
    ] {
        let old = layout(old_size, align.min(64));
        let new = layout(new_size, align);
        let p = take(&heap, old, false);
        unsafe {
            // Dirty the whole block, its slack past `old_size` too.
            if old_size != 0 {
                let usable = ShardAlloc::usable_size(p.as_ptr());
                p.as_ptr().write_bytes(0xCD, usable);
                fill(p, old_size, 2);
            }
            let q = (&heap)
                .grow_zeroed(p, old, new)
                .expect("grow_zeroed")
                .cast::<u8>();
            assert_eq!(q.as_ptr() as usize % align, 0);
            check(q, old_size, 2);
            let tail = std::slice::from_raw_parts(q.as_ptr().add(old_size), new_size - old_size);
            assert!(
                tail.iter().all(|&b| b == 0),
                "{old_size} -> {new_size}: the new bytes are not zero"
            );
            (&heap).deallocate(q, new);
        }
    }
}

#[test]
fn shrink_keeps_contents_and_alignment() {
    let _serial = serial();
    let heap = Heap::new();
    for &(old_size, new_size, old_align, new_align) in &[
        (4 * MIB, 100 * KIB, 8, 8),
        (100 * KIB, 1000, 64, 64),
        (1000, 900, 8, 8), // stays in place
        (1000, 10, 4 * KIB, 8),
        (300, 0, 16, 16), // to zero bytes
        (0, 0, 8, 8),
    ] {
        let old = layout(old_size, old_align);
        let new = layout(new_size, new_align);
        let p = take(&heap, old, false);
        unsafe {
            fill(p, old_size, 4);
            let q = (&heap).shrink(p, old, new).expect("shrink");
            assert_eq!(q.len(), new_size);
            let q = q.cast::<u8>();
            assert_eq!(q.as_ptr() as usize % new_align, 0);
            check(q, new_size, 4);
            (&heap).deallocate(q, new);
        }
    }
}

type Map<'h> = HashMap<u64, (Vec<u8, &'h Heap>, Vec<u64, &'h Heap>), DefaultHashBuilder, &'h Heap>;

/// A map from names to vectors, a box and a vector of boxes, all in `heap`; some of it freed.
fn build_request(heap: &Heap, n: u64) -> (Map<'_>, Box<[u64; 32], &Heap>) {
    let mut map: Map = HashMap::with_hasher_in(DefaultHashBuilder::default(), heap);
    for i in 0..n {
        let mut key = Vec::new_in(heap);
        key.extend_from_slice(format!("key-{i}").as_bytes());
        let mut value = Vec::new_in(heap);
        value.extend(0..i % 50);
        map.insert(i, (key, value));
        if i % 3 == 0 {
            map.remove(&(i / 2)); // freed as we go
        }
    }
    let boxed = Box::new_in([n; 32], heap);
    let mut many = Vec::new_in(heap);
    for i in 0..n {
        many.push(Box::new_in(i, heap));
    }
    many.truncate(n as usize / 2);
    many.shrink_to_fit();
    assert!(many.iter().enumerate().all(|(i, b)| **b == i as u64));
    (map, boxed)
}

#[test]
fn collections_in_a_heap() {
    let _serial = serial();
    let heap = Heap::new();
    let other = Heap::new();
    let (map, boxed) = build_request(&heap, 2000);
    assert!(heap.contains(&*boxed));
    assert!(!other.contains(&*boxed));
    for (&i, (k, v)) in &map {
        assert!(heap.contains(k.as_ptr()));
        assert_eq!(k.as_slice(), format!("key-{i}").as_bytes());
        assert_eq!(v.len() as u64, i % 50);
        if !v.is_empty() {
            assert!(heap.contains(v.as_ptr()));
        }
    }
    assert!(map.contains_key(&1999) && !map.contains_key(&3));
    assert_eq!(boxed[31], 2000);
}

/// The bytes of pages in use, process-wide (only this file's heaps allocate from shardalloc).
fn page_bytes() -> usize {
    shardalloc::stats().page_bytes
}

#[test]
fn drop_frees_the_memory_of_the_heap() {
    let _serial = serial();
    const BLOCKS: usize = 500_000; // 64 B each: 32 MB
    let before = page_bytes();
    let heap = Heap::new();
    let mut kept = Vec::with_capacity_in(BLOCKS, &heap);
    for i in 0..BLOCKS {
        kept.push(Box::new_in([i as u64; 8], &heap));
    }
    // Leak the blocks on purpose: only destroying the heap can free them now.
    std::mem::forget(kept);
    // The heap's own count: the process-wide one may fall meanwhile, where the housekeeper
    // frees pages that earlier tests' threads left.
    let own = unsafe { heap.stats() };
    assert!(
        own.bytes >= BLOCKS * 64,
        "the heap holds {} bytes of blocks",
        own.bytes
    );
    let full = page_bytes();
    drop(heap);
    let after = page_bytes();
    assert!(
        after <= before + 2 * MIB,
        "{} bytes of pages still in use after the heap was dropped (before: {before}, full: {full})",
        after - before.min(after)
    );
}

#[test]
fn delete_keeps_blocks_alive() {
    let _serial = serial();
    let heap = Heap::new();
    let l = layout(1000, 64);
    let blocks: std::vec::Vec<_> = (0..100)
        .map(|tag| {
            let p = take(&heap, l, false);
            unsafe { fill(p, 1000, tag) };
            p
        })
        .collect();
    heap.delete();
    // Another heap's allocations must not land on the kept blocks.
    let next = Heap::new();
    let fresh: std::vec::Vec<_> = (0..100).map(|_| take(&next, l, false)).collect();
    for &p in &fresh {
        unsafe { p.as_ptr().write_bytes(0xEE, 1000) };
    }
    for (tag, p) in blocks.into_iter().enumerate() {
        unsafe {
            check(p, 1000, tag);
            std::alloc::GlobalAlloc::dealloc(&ShardAlloc, p.as_ptr(), l);
        }
    }
    drop(next);
}

#[test]
fn zero_sized_blocks() {
    let _serial = serial();
    let heap = Heap::new();
    for &align in &[1, 8, 4 * KIB, 2 * MIB] {
        let l = layout(0, align);
        let p = take(&heap, l, false);
        let q = take(&heap, l, true);
        unsafe {
            (&heap).deallocate(p, l);
            (&heap).deallocate(q, l);
        }
    }
    let v: Vec<(), &Heap> = Vec::with_capacity_in(1000, &heap);
    assert_eq!(v.len(), 0);
}

#[test]
fn heap_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Heap>();
    send_sync::<&Heap>();
}

// `Heap::stats` is unsafe only for other threads using the heap meanwhile; none here.
#[test]
fn stats_count_the_blocks_in_use() {
    let _serial = serial();
    let heap = Heap::new();
    assert_eq!(unsafe { heap.stats() }.blocks, 0);
    let mut boxes = Vec::new_in(&heap);
    boxes.reserve_exact(1000);
    for i in 0..1000u64 {
        boxes.push(Box::new_in([i; 4], &heap)); // 32 B
    }
    let s = unsafe { heap.stats() };
    assert_eq!(s.blocks, 1001);
    assert!(s.bytes >= 1000 * 32 + 1000 * 8);
    assert!(s.committed >= s.bytes);
    assert!(s.pages >= 2);
    boxes.truncate(400);
    assert_eq!(unsafe { heap.stats() }.blocks, 401);
    drop(boxes);
    let s = unsafe { heap.stats() };
    assert_eq!((s.blocks, s.bytes), (0, 0));
    heap.collect(true);
}

/// Threads allocate from one heap at once and free each other's blocks: each sends what it
/// made to the next thread in a ring, which checks and drops it. Needs process-wide heaps.
#[test]
fn threads_share_one_heap() {
    let _serial = serial();
    const THREADS: usize = 8;
    const ROUNDS: usize = 50;
    const PER_ROUND: usize = 200;
    let heap = Heap::new();
    let (senders, receivers): (std::vec::Vec<_>, std::vec::Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel()).unzip();
    thread::scope(|s| {
        for (t, rx) in receivers.into_iter().enumerate() {
            let to_next = senders[(t + 1) % THREADS].clone();
            let heap = &heap;
            s.spawn(move || {
                let mut received = 0;
                for round in 0..ROUNDS {
                    let mut batch = Vec::new_in(heap);
                    for i in 0..PER_ROUND {
                        let mut v = Vec::new_in(heap);
                        v.extend((0..(i % 40) as u64).map(|k| (t * 1_000_000 + i) as u64 + k));
                        batch.push((t, i, v));
                    }
                    to_next.send((round, batch)).unwrap();
                    // The previous thread's batch of this round: check it, free it here.
                    let (r, theirs) = rx.recv().unwrap();
                    assert_eq!(r, round);
                    for (from, i, v) in theirs.iter() {
                        assert_eq!(*from, (t + THREADS - 1) % THREADS);
                        assert!(v
                            .iter()
                            .enumerate()
                            .all(|(k, &x)| x == (from * 1_000_000 + i + k) as u64));
                    }
                    received += theirs.len();
                    drop(theirs);
                }
                assert_eq!(received, ROUNDS * PER_ROUND);
            });
        }
        drop(senders);
    });
    // SAFETY: the threads that used the heap have ended with the scope.
    assert_eq!(unsafe { heap.stats() }.blocks, 0);
}

/// A heap made on one thread, filled on a second and dropped on a third. Needs process-wide
/// heaps.
#[test]
fn heap_moves_between_threads() {
    let _serial = serial();
    let heap = thread::spawn(Heap::new).join().unwrap();
    let heap = thread::spawn(move || {
        let mut map = HashMap::with_hasher_in(DefaultHashBuilder::default(), &heap);
        for i in 0..10_000u64 {
            map.insert(i, Box::new_in(i, &heap));
        }
        std::mem::forget(map); // left to the heap's destruction
        heap
    })
    .join()
    .unwrap();
    let before = page_bytes();
    thread::spawn(move || drop(heap)).join().unwrap();
    assert!(page_bytes() < before);
}
