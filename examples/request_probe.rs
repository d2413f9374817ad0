//! The request of the criterion group `request_heap` (benches/request_heap) as a plain
//! program, for profilers that need a fixed amount of work (`perf stat`, callgrind):
//!
//! ```text
//! cargo build --release --example request_probe
//! perf stat -e page-faults target/release/examples/request_probe heap|global|bump N R
//! ```
//!
//! Runs one warm-up request and then R requests of N objects, in a `Heap` dropped at the end
//! of each (`heap`), on shardalloc's global allocator with one free per object (`global`), or
//! in a bumpalo arena reset after each (`bump`), and prints the checksum. An optional fourth argument pauses that many milliseconds after
//! each request, as a server between requests or a loaded machine's scheduler would: memory
//! given back at the end of a request may then be purged before the next one takes it.

use std::alloc::{GlobalAlloc, Layout};
use std::mem;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use bumpalo::Bump;
use shardalloc::{Heap, ShardAlloc};

/// shardalloc's global allocator as an allocator-api2 `Allocator`; a reference, as the
/// benchmark's `Via` is, so that collections have the same size as with `&Heap`.
#[derive(Clone, Copy)]
struct Global(&'static ShardAlloc);

unsafe impl Allocator for Global {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            self.0.dealloc(ptr.as_ptr(), layout)
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 || old.align() != new.align() {
            let q = self.allocate(new)?;
            std::ptr::copy_nonoverlapping(ptr.as_ptr(), q.cast::<u8>().as_ptr(), old.size());
            self.deallocate(ptr, old);
            return Ok(q);
        }
        let p = self.0.realloc(ptr.as_ptr(), old, new.size());
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, new.size()))
            .ok_or(AllocError)
    }
}

static SHARD: ShardAlloc = ShardAlloc;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[path = "../benches/request_heap/request.rs"]
mod request;
use request::build;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) || !["heap", "global", "bump"].contains(&args[1].as_str()) {
        eprintln!("usage: request_probe heap|global|bump N R [PAUSE_MS]");
        std::process::exit(2);
    }
    let n: usize = args[2].parse().expect("N");
    let r: usize = args[3].parse().expect("R");
    let pause =
        std::time::Duration::from_millis(args.get(4).map_or(0, |a| a.parse().expect("PAUSE_MS")));
    let mut total = 0u64;
    let mut bump = Bump::new();
    for _ in 0..=r {
        total = total.wrapping_add(if args[1] == "bump" {
            let (req, sum) = build(&bump, n);
            mem::forget(req);
            bump.reset();
            sum
        } else if args[1] == "heap" {
            let heap = Heap::new();
            let (req, sum) = build(&heap, n);
            mem::forget(req); // the heap takes it all
            drop(heap);
            sum
        } else {
            let (req, sum) = build(Global(&SHARD), n);
            drop(req);
            sum
        });
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    println!("{total}");
}
