//! The criterion suite: shardalloc beside the system allocator, mimalloc and jemalloc, all four
//! in one binary and one run.
//!
//! ```text
//! cargo bench --bench allocators                    # the full suite, about 10-15 min on 2 cores
//! SHARDALLOC_BENCH_QUICK=1 cargo bench --bench allocators   # smoke run, about 1-2 min
//! cargo bench --bench allocators -- threads         # only the groups whose name matches
//! python3 bench/criterion_table.py                  # the Markdown table of ratios
//! ```
//!
//! Every workload is a generic function over a `GlobalAlloc` and runs once per allocator: the
//! allocator's own instance is called directly (`alloc`/`dealloc`/`realloc`), or, for the
//! collection workloads, wrapped in [`Via`], which makes any `GlobalAlloc` an
//! `allocator_api2::alloc::Allocator`, so `allocator_api2`'s `Vec`/`Box` and `hashbrown`'s
//! `HashMap` allocate from it. The binary's own global allocator stays the system allocator;
//! it serves only criterion and the threads' bookkeeping, the same for all four.
//!
//! The criterion IDs are `<group>/<allocator>/<parameter>`; `bench/criterion_table.py` reads
//! them back from `target/criterion/` and compares the allocators parameter by parameter.
//! Within a group, the order of the allocators rotates from one parameter to the next, so a
//! change in the machine's load does not always hit the same allocator.

// rust-version (Cargo.toml) is the library's; tests and benches may use newer std APIs.
#![allow(clippy::incompatible_msrv)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::{self, NonNull};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use hashbrown::{DefaultHashBuilder, HashMap};
use mimalloc::MiMalloc;
use shardalloc::ShardAlloc;
use tikv_jemallocator::Jemalloc;

static SHARD: ShardAlloc = ShardAlloc;
static SYSTEM: System = System;
static MIMALLOC: MiMalloc = MiMalloc;
static JEMALLOC: Jemalloc = Jemalloc;

// ---- Any GlobalAlloc as an allocator-api2 Allocator ----------------------------------------

/// Makes a `GlobalAlloc` usable by allocator-generic collections. Zero-sized requests never
/// reach the allocator (the `GlobalAlloc` contract forbids them); growing and shrinking go to
/// `realloc` when the alignment stays the same, as `std`'s own adapter does.
struct Via<A: 'static>(&'static A);

impl<A> Clone for Via<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for Via<A> {}

fn dangling(layout: Layout) -> NonNull<[u8]> {
    // A non-null pointer with the layout's alignment and no provenance: valid for 0 bytes.
    let p = NonNull::new(ptr::without_provenance_mut::<u8>(layout.align())).unwrap();
    NonNull::slice_from_raw_parts(p, 0)
}

fn block(p: *mut u8, size: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, size))
        .ok_or(AllocError)
}

// SAFETY: every block comes from the wrapped GlobalAlloc with its Layout and goes back to it
// with the same Layout; zero-sized blocks are dangling and never passed on.
unsafe impl<A: GlobalAlloc> Allocator for Via<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        block(unsafe { self.0.alloc(layout) }, layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        block(unsafe { self.0.alloc_zeroed(layout) }, layout.size())
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            self.0.dealloc(ptr.as_ptr(), layout)
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 && old.align() == new.align() {
            return block(self.0.realloc(ptr.as_ptr(), old, new.size()), new.size());
        }
        let fresh = self.allocate(new)?;
        ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr().cast::<u8>(), old.size());
        self.deallocate(ptr, old);
        Ok(fresh)
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() != 0 && old.align() == new.align() {
            return block(self.0.realloc(ptr.as_ptr(), old, new.size()), new.size());
        }
        let fresh = self.allocate(new)?;
        ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr().cast::<u8>(), new.size());
        self.deallocate(ptr, old);
        Ok(fresh)
    }
}

// ---- Helpers -------------------------------------------------------------------------------

/// xorshift64*: the same request sequence for every allocator.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Allocates through `a`, writes the first and the last byte, panics on null.
#[inline]
unsafe fn take<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    let p = a.alloc(layout);
    assert!(!p.is_null(), "allocation of {layout:?} failed");
    p.write(1);
    p.add(layout.size() - 1).write(2);
    p
}

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn size_name(size: usize) -> String {
    if size >= MIB && size.is_multiple_of(MIB) {
        format!("{}MiB", size / MIB)
    } else if size >= KIB && size.is_multiple_of(KIB) {
        format!("{}KiB", size / KIB)
    } else {
        format!("{size}B")
    }
}

fn quick() -> bool {
    std::env::var_os("SHARDALLOC_BENCH_QUICK").is_some_and(|v| v != "0")
}

// ---- Workloads -----------------------------------------------------------------------------

/// Round trips of one block: allocate, touch, free, `PAIRS` times; nothing else stays live, so
/// a page-based allocator's page empties on every free.
const PAIRS: usize = 64;

fn roundtrip_lone<A: GlobalAlloc>(a: &'static A, layout: Layout) -> u64 {
    let mut sum = 0u64;
    for _ in 0..PAIRS {
        unsafe {
            let p = black_box(take(a, layout));
            sum += *p as u64;
            a.dealloc(p, layout);
        }
    }
    sum
}

/// `PAIRS` blocks allocated, then freed in allocation order.
fn roundtrip_batch<A: GlobalAlloc>(a: &'static A, layout: Layout) -> u64 {
    let mut ptrs = [ptr::null_mut::<u8>(); PAIRS];
    for p in ptrs.iter_mut() {
        *p = unsafe { take(a, layout) };
    }
    let ptrs = black_box(ptrs);
    let mut sum = 0u64;
    for p in ptrs {
        unsafe {
            sum += *p as u64;
            a.dealloc(p, layout);
        }
    }
    sum
}

/// One buffer grown by `realloc` from `start` to `end` bytes, by `step` bytes or (step 0) by
/// doubling; the last byte is written after each call and the first byte checked.
fn realloc_growth<A: GlobalAlloc>(a: &'static A, start: usize, end: usize, step: usize) -> u64 {
    unsafe {
        let mut layout = Layout::from_size_align(start, 8).unwrap();
        let mut p = take(a, layout);
        let mut calls = 0u64;
        while layout.size() < end {
            let size = if step == 0 {
                layout.size() * 2
            } else {
                layout.size() + step
            };
            p = a.realloc(p, layout, size);
            assert!(!p.is_null() && *p == 1, "realloc lost the content");
            layout = Layout::from_size_align(size, 8).unwrap();
            p.add(size - 1).write(3);
            calls += 1;
        }
        a.dealloc(p, layout);
        calls
    }
}

/// `count` vectors of `u64`, each grown by `push` from empty to `len` elements.
fn vec_growth<A: GlobalAlloc>(a: &'static A, count: usize, len: usize) -> u64 {
    let mut sum = 0u64;
    for c in 0..count {
        let mut v = AVec::new_in(Via(a));
        for i in 0..len {
            v.push((i + c) as u64);
        }
        sum += black_box(&v)[len - 1];
    }
    sum
}

/// Strings (UTF-8 byte vectors: `allocator_api2` has no `String`, and `String` is a `Vec<u8>`)
/// grown piece by piece: `count` of them, each to about `len` bytes.
fn string_growth<A: GlobalAlloc>(a: &'static A, count: usize, len: usize) -> u64 {
    const PIECES: [&str; 4] = ["alpha ", "beta, ", "gamma; ", "déjà vu "];
    let mut sum = 0u64;
    for c in 0..count {
        let mut s: AVec<u8, Via<A>> = AVec::new_in(Via(a));
        let mut k = c;
        while s.len() < len {
            s.extend_from_slice(PIECES[k % 4].as_bytes());
            k += 1;
        }
        sum += black_box(&s).len() as u64;
    }
    sum
}

/// A hashbrown `HashMap` (table and values both from the allocator) used as a cache: keys
/// inserted with a value of 8-127 bytes, and the key `window` inserts older removed.
fn hashmap_churn<A: GlobalAlloc>(a: &'static A, ops: u64, window: u64) -> u64 {
    let mut map: HashMap<u64, AVec<u8, Via<A>>, DefaultHashBuilder, Via<A>> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), Via(a));
    let mut rng = Rng(7);
    let mut sum = 0u64;
    for i in 0..ops {
        let mut value = AVec::with_capacity_in(8 + (rng.below(120) as usize), Via(a));
        value.resize(value.capacity(), i as u8);
        map.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), value);
        if i >= window {
            let gone = (i - window).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            sum += map.remove(&gone).map_or(0, |v| v.len() as u64);
        }
    }
    sum + map.len() as u64
}

/// A hashbrown `HashMap<u64, u64>` grown by inserts to `n` entries and dropped: the table's
/// reallocations, up to a large block.
fn hashmap_grow<A: GlobalAlloc>(a: &'static A, n: u64) -> u64 {
    let mut map: HashMap<u64, u64, DefaultHashBuilder, Via<A>> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), Via(a));
    for i in 0..n {
        map.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
    }
    black_box(&map).len() as u64
}

/// The ordered-map stand-in: `BTreeMap` takes no allocator parameter on stable Rust, so an
/// ordered map of our own, a treap of `allocator_api2` boxes (one node per key), carries the
/// same insert/remove churn. Random keys in a sliding window.
struct Node<A: GlobalAlloc + 'static> {
    key: u64,
    prio: u64,
    value: u64,
    left: Tree<A>,
    right: Tree<A>,
}

type Tree<A> = Option<ABox<Node<A>, Via<A>>>;

/// Splits `t` into the keys below `key` and those at or above it.
fn split<A: GlobalAlloc>(t: Tree<A>, key: u64) -> (Tree<A>, Tree<A>) {
    match t {
        None => (None, None),
        Some(mut n) => {
            if n.key < key {
                let (l, r) = split(n.right.take(), key);
                n.right = l;
                (Some(n), r)
            } else {
                let (l, r) = split(n.left.take(), key);
                n.left = r;
                (l, Some(n))
            }
        }
    }
}

/// Joins two treaps, every key of `l` below every key of `r`.
fn merge<A: GlobalAlloc>(l: Tree<A>, r: Tree<A>) -> Tree<A> {
    match (l, r) {
        (None, t) | (t, None) => t,
        (Some(mut a), Some(mut b)) => {
            if a.prio > b.prio {
                a.right = merge(a.right.take(), Some(b));
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                Some(b)
            }
        }
    }
}

fn treap_churn<A: GlobalAlloc>(a: &'static A, ops: u64, window: u64) -> u64 {
    let mut root: Tree<A> = None;
    let mut keys = Rng(11);
    let mut old_keys = Rng(11);
    let mut sum = 0u64;
    for i in 0..ops {
        let key = keys.next() >> 16;
        let (l, r) = split(root.take(), key);
        let (_, r) = split(r, key + 1); // replaces an equal key
        let node = ABox::new_in(
            Node {
                key,
                prio: key.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                value: i,
                left: None,
                right: None,
            },
            Via(a),
        );
        root = merge(merge(l, Some(node)), r);
        if i >= window {
            let gone = old_keys.next() >> 16;
            let (l, r) = split(root.take(), gone);
            let (mid, r) = split(r, gone + 1);
            sum += mid.map_or(0, |n| n.value & 1);
            root = merge(l, r);
        }
    }
    // Drop iteratively from the root down: the recursion depth stays the treap's height.
    sum + root.map_or(0, |n| n.key & 1)
}

/// A full binary tree of boxes, `depth` levels, built, counted and dropped.
struct TreeNode<A: GlobalAlloc + 'static> {
    children: Option<(TreeBox<A>, TreeBox<A>)>,
}

type TreeBox<A> = ABox<TreeNode<A>, Via<A>>;

fn build_tree<A: GlobalAlloc>(a: &'static A, depth: u32) -> TreeBox<A> {
    let children = (depth > 0).then(|| (build_tree(a, depth - 1), build_tree(a, depth - 1)));
    ABox::new_in(TreeNode { children }, Via(a))
}

fn count_tree<A: GlobalAlloc>(t: &TreeNode<A>) -> u64 {
    1 + t
        .children
        .as_ref()
        .map_or(0, |(l, r)| count_tree(l) + count_tree(r))
}

fn binary_trees<A: GlobalAlloc>(a: &'static A, depth: u32, repeat: u32) -> u64 {
    (0..repeat).map(|_| count_tree(&build_tree(a, depth))).sum()
}

/// One producer thread allocates `blocks` blocks (size `size`, or 8-1024 B when `size` is 0)
/// and sends them in batches of 64 through a bounded channel; the consumer thread checks and
/// frees them: every free is a cross-thread free. The channel moves arrays, so it allocates
/// nothing per message.
fn producer_consumer<A: GlobalAlloc + Sync>(a: &'static A, blocks: usize, size: usize) -> u64 {
    const BATCH: usize = 64;
    let (tx, rx) = mpsc::sync_channel::<[(usize, usize); BATCH]>(16);
    let consumer = thread::spawn(move || {
        let mut sum = 0u64;
        for batch in rx {
            for (addr, len) in batch {
                let p = addr as *mut u8;
                unsafe {
                    assert_eq!(*p, 1);
                    sum += len as u64;
                    a.dealloc(p, Layout::from_size_align_unchecked(len, 8));
                }
            }
        }
        sum
    });
    let mut rng = Rng(5);
    let mut batch = [(0usize, 0usize); BATCH];
    for i in 0..blocks {
        let len = if size == 0 {
            8 + rng.below(1017) as usize
        } else {
            size
        };
        let p = unsafe { take(a, Layout::from_size_align(len, 8).unwrap()) };
        batch[i % BATCH] = (p as usize, len);
        if i % BATCH == BATCH - 1 {
            tx.send(batch).unwrap();
        }
    }
    assert_eq!(blocks % BATCH, 0);
    drop(tx);
    consumer.join().unwrap()
}

/// `threads` threads, each with its own 256 slots: `total / threads` times, a random slot's
/// block (8-512 B) is freed and replaced. Threads are created and joined in the iteration, so
/// a thread's first allocation and its exit are part of the cost.
fn thread_churn<A: GlobalAlloc + Sync>(a: &'static A, threads: u64, total: u64) -> u64 {
    const SLOTS: usize = 256;
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(100 + t);
                    let mut slots = [(ptr::null_mut::<u8>(), 0usize); SLOTS];
                    let mut sum = 0u64;
                    for _ in 0..total / threads {
                        let k = rng.below(SLOTS as u64) as usize;
                        let len = 8 + rng.below(505) as usize;
                        unsafe {
                            let (p, old) = slots[k];
                            if !p.is_null() {
                                sum += *p as u64;
                                a.dealloc(p, Layout::from_size_align_unchecked(old, 8));
                            }
                            slots[k] = (take(a, Layout::from_size_align(len, 8).unwrap()), len);
                        }
                    }
                    for (p, len) in slots {
                        if !p.is_null() {
                            unsafe { a.dealloc(p, Layout::from_size_align_unchecked(len, 8)) };
                        }
                    }
                    sum
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// One large block: allocated, one byte written per 4 KiB page, read back, freed. Whether the
/// allocator keeps the memory for the next request or returns it (and takes the page faults
/// again) decides this one.
fn large_block<A: GlobalAlloc>(a: &'static A, size: usize) -> u64 {
    let layout = Layout::from_size_align(size, 64).unwrap();
    unsafe {
        let p = take(a, layout);
        for off in (0..size).step_by(4096) {
            p.add(off).write(off as u8 | 1);
        }
        let sum = (0..size).step_by(4096).map(|off| *p.add(off) as u64).sum();
        a.dealloc(p, layout);
        sum
    }
}

// ---- Running each workload on every allocator ----------------------------------------------

type Run<'a> = Box<dyn FnMut() -> u64 + 'a>;

/// Benchmarks `work` on the four allocators under `<group>/<allocator>/<param>`, in an order
/// that rotates with `turn`. The four closures must compute the same checksum.
macro_rules! compare {
    ($group:expr, $param:expr, $turn:expr, |$a:ident| $work:expr) => {{
        let mut runs: Vec<(&str, Run)> = vec![
            (
                "shardalloc",
                Box::new(move || {
                    let $a = &SHARD;
                    $work
                }),
            ),
            (
                "system",
                Box::new(move || {
                    let $a = &SYSTEM;
                    $work
                }),
            ),
            (
                "mimalloc",
                Box::new(move || {
                    let $a = &MIMALLOC;
                    $work
                }),
            ),
            (
                "jemalloc",
                Box::new(move || {
                    let $a = &JEMALLOC;
                    $work
                }),
            ),
        ];
        let expected = (runs[1].1)();
        for (name, run) in runs.iter_mut() {
            assert_eq!(run(), expected, "{name} computed a different checksum");
        }
        let turn: usize = $turn;
        let param = $param;
        runs.rotate_left(turn % 4);
        for (name, mut run) in runs {
            $group.bench_function(BenchmarkId::new(name, &param), |b| b.iter(|| run()));
        }
    }};
}

fn group<'a>(c: &'a mut Criterion, name: &str, long: bool) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    if quick() {
        g.warm_up_time(Duration::from_millis(100));
        g.measurement_time(Duration::from_millis(300));
    } else {
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
    }
    if long {
        // Iterations of milliseconds: the same number per sample, ten samples.
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
    } else {
        g.sample_size(20);
    }
    g
}

fn bench_roundtrip(c: &mut Criterion) {
    let sizes: &[usize] = if quick() {
        &[16, 1024, 64 * KIB, MIB]
    } else {
        &[8, 16, 64, 256, 1024, 4 * KIB, 32 * KIB, 256 * KIB, MIB]
    };
    let mut g = group(c, "roundtrip_lone", false);
    for (i, &size) in sizes.iter().enumerate() {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.throughput(Throughput::Elements(PAIRS as u64));
        compare!(g, size_name(size), i, |a| roundtrip_lone(a, layout));
    }
    g.finish();
    let mut g = group(c, "roundtrip_batch64", false);
    for (i, &size) in sizes.iter().enumerate() {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.throughput(Throughput::Elements(PAIRS as u64));
        compare!(g, size_name(size), i, |a| roundtrip_batch(a, layout));
    }
    g.finish();
    // Aligned requests: 48 B blocks (align 8 to 64), 4 KiB blocks (align 256 to 4 KiB).
    let aligned: &[(usize, usize)] = &[
        (48, 8),
        (48, 16),
        (48, 32),
        (48, 64),
        (4096, 256),
        (4096, 4096),
    ];
    let mut g = group(c, "roundtrip_aligned", false);
    for (i, &(size, align)) in aligned.iter().enumerate() {
        let layout = Layout::from_size_align(size, align).unwrap();
        g.throughput(Throughput::Elements(PAIRS as u64));
        let param = format!("{}-align{}", size_name(size), size_name(align));
        compare!(g, param, i, |a| roundtrip_batch(a, layout));
    }
    g.finish();
}

fn bench_growth(c: &mut Criterion) {
    let mut g = group(c, "realloc_growth", false);
    g.throughput(Throughput::Elements(1));
    compare!(g, "16B-steps-to-4KiB", 0, |a| realloc_growth(
        a, 16, 4096, 16
    ));
    compare!(g, "doubling-to-4MiB", 1, |a| realloc_growth(
        a,
        64,
        4 * MIB,
        0
    ));
    g.finish();

    let mut g = group(c, "vec_growth", false);
    g.throughput(Throughput::Elements(1));
    compare!(g, "100x100", 0, |a| vec_growth(a, 100, 100));
    compare!(g, "1x100000", 1, |a| vec_growth(a, 1, 100_000));
    g.finish();

    let mut g = group(c, "string_growth", false);
    g.throughput(Throughput::Elements(1));
    compare!(g, "1000x64B", 0, |a| string_growth(a, 1000, 64));
    compare!(g, "1x64KiB", 1, |a| string_growth(a, 1, 64 * KIB));
    g.finish();
}

fn bench_maps(c: &mut Criterion) {
    let mut g = group(c, "map_churn", false);
    g.throughput(Throughput::Elements(1));
    compare!(g, "hashmap-20000-window4096", 0, |a| hashmap_churn(
        a, 20_000, 4096
    ));
    compare!(g, "hashmap-grow-100000", 1, |a| hashmap_grow(a, 100_000));
    compare!(g, "treap-20000-window4096", 2, |a| treap_churn(
        a, 20_000, 4096
    ));
    g.finish();

    let mut g = group(c, "binary_trees", false);
    g.throughput(Throughput::Elements(1));
    compare!(g, "depth10x16", 0, |a| binary_trees(a, 10, 16));
    compare!(g, "depth16", 1, |a| binary_trees(a, 16, 1));
    g.finish();
}

fn bench_threads(c: &mut Criterion) {
    let mut g = group(c, "producer_consumer", true);
    g.throughput(Throughput::Elements(1));
    compare!(g, "64B", 0, |a| producer_consumer(a, 64_000, 64));
    compare!(g, "8-1024B", 1, |a| producer_consumer(a, 64_000, 0));
    g.finish();

    let mut g = group(c, "thread_churn", true);
    g.throughput(Throughput::Elements(1));
    for (i, threads) in [1u64, 2, 4, 8, 64].into_iter().enumerate() {
        compare!(g, format!("{threads}-threads"), i, |a| thread_churn(
            a,
            threads,
            1 << 18
        ));
    }
    g.finish();

    let mut g = group(c, "large_block", true);
    g.throughput(Throughput::Elements(1));
    for (i, mib) in [1usize, 4, 16, 64].into_iter().enumerate() {
        compare!(g, size_name(mib * MIB), i, |a| large_block(a, mib * MIB));
    }
    g.finish();
}

// request_heap, heap_destroy: shardalloc::Heap against the global allocators and bumpalo.
mod request_heap;

fn main() {
    let mut c = Criterion::default()
        .without_plots()
        .noise_threshold(0.05)
        .configure_from_args();
    bench_roundtrip(&mut c);
    bench_growth(&mut c);
    bench_maps(&mut c);
    bench_threads(&mut c);
    request_heap::bench(&mut c);
    c.final_summary();
}
