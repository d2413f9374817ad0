//! The groups `request_heap` and `heap_destroy`: a server's request built in a `shardalloc::Heap`
//! and dropped with it, against the same request on the global allocators and in a bumpalo
//! arena.
//!
//! A request builds `n` objects: a string of 16-80 bytes each (grown piece by piece), for every
//! other one a vector of 2-17 `u64` in a hash map, and along the way frees half of the map's
//! entries and a quarter of the strings. The variants (criterion IDs
//! `request_heap/<variant>/<n>`):
//!
//! - `shardalloc`, `mimalloc`: the allocator's global instance (through [`Via`]); at the end
//!   every object is dropped, one free each.
//! - `heap`: a new `Heap` per request; at the end the collections are forgotten and the heap is
//!   dropped, which frees all of it at once. The frees along the way are real frees whose
//!   memory the request reuses.
//! - `bumpalo`: one `Bump` reset after each request (its fastest use: the chunks stay); its
//!   frees along the way give nothing back.
//!
//! `heap_destroy/<variant>/1M-blocks` times the end alone: a million 32-byte blocks freed by
//! dropping their heap (`heap`), or one by one with the global allocator's free (`shardalloc`,
//! `mimalloc`). The blocks are made in criterion's setup, which is not timed.

use std::mem;

use allocator_api2::alloc::Allocator;
use bumpalo::Bump;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use shardalloc::Heap;

mod request;
use request::build;

use super::{group, quick, Rng, Run, Via, MIMALLOC, SHARD};

/// A request on a global allocator: every object freed on its own at the end.
fn on_global<A: std::alloc::GlobalAlloc>(a: &'static A, n: usize) -> u64 {
    let (req, sum) = build(Via(a), n);
    drop(req);
    sum
}

/// A request in a heap of its own, dropped at once.
fn in_heap(n: usize) -> u64 {
    let heap = Heap::new();
    let (req, sum) = build(&heap, n);
    // Memory only: skipping the destructors leaks nothing, the heap takes it all.
    mem::forget(req);
    drop(heap);
    sum
}

/// A request in a bumpalo arena, reset afterwards.
fn in_bump(bump: &mut Bump, n: usize) -> u64 {
    let (req, sum) = build(&*bump, n);
    mem::forget(req);
    bump.reset();
    sum
}

pub fn bench(c: &mut Criterion) {
    let sizes: &[usize] = &[1_000, 10_000, 100_000];
    let mut g = group(c, "request_heap", false);
    for (turn, &n) in sizes.iter().enumerate() {
        g.throughput(Throughput::Elements(n as u64));
        let mut bump = Bump::new();
        let mut runs: Vec<(&str, Run)> = vec![
            ("heap", Box::new(move || in_heap(n))),
            ("shardalloc", Box::new(move || on_global(&SHARD, n))),
            ("mimalloc", Box::new(move || on_global(&MIMALLOC, n))),
            ("bumpalo", Box::new(move || in_bump(&mut bump, n))),
        ];
        let expected = (runs[0].1)();
        for (name, run) in runs.iter_mut() {
            assert_eq!(run(), expected, "{name} computed a different checksum");
        }
        runs.rotate_left(turn % 4);
        for (name, mut run) in runs {
            g.bench_function(BenchmarkId::new(name, n), |b| b.iter(&mut run));
        }
    }
    g.finish();

    // A million blocks, freed by destroying their heap or one by one.
    const BLOCKS: usize = 1_000_000;
    let param = "1M-blocks";
    let mut g = group(c, "heap_destroy", true);
    g.throughput(Throughput::Elements(BLOCKS as u64));
    if quick() {
        g.sample_size(10);
    }
    g.bench_function(BenchmarkId::new("heap", param), |b| {
        b.iter_batched(
            || {
                let heap = Heap::new();
                for i in 0..BLOCKS {
                    let p = (&heap).allocate(BLOCK).expect("allocation failed");
                    unsafe { p.cast::<u64>().write(i as u64) };
                }
                heap
            },
            drop,
            BatchSize::PerIteration,
        )
    });
    for (name, a) in [
        ("shardalloc", &SHARD as &dyn std::alloc::GlobalAlloc),
        ("mimalloc", &MIMALLOC),
    ] {
        g.bench_function(BenchmarkId::new(name, param), |b| {
            b.iter_batched(
                || {
                    (0..BLOCKS)
                        .map(|i| unsafe {
                            let p = a.alloc(BLOCK);
                            assert!(!p.is_null(), "allocation failed");
                            p.cast::<u64>().write(i as u64);
                            p
                        })
                        .collect::<Vec<_>>()
                },
                |blocks| {
                    for &p in &blocks {
                        unsafe { a.dealloc(p, BLOCK) };
                    }
                    blocks // its own buffer is freed after the timing
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

const BLOCK: std::alloc::Layout = match std::alloc::Layout::from_size_align(32, 8) {
    Ok(l) => l,
    Err(_) => panic!("a valid layout"),
};
