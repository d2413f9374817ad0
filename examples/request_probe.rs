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
use std::hint::black_box;
use std::mem;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::vec::Vec as AVec;
use bumpalo::Bump;
use hashbrown::{DefaultHashBuilder, HashMap};
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

struct Request<A: Allocator + Copy> {
    strings: AVec<AVec<u8, A>, A>,
    index: HashMap<u64, AVec<u64, A>, DefaultHashBuilder, A>,
}

/// The benchmark's request: strings grown piece by piece, vectors in a hash map, a quarter
/// of the strings and half of the map's entries freed along the way.
fn build<A: Allocator + Copy>(a: A, n: usize) -> (Request<A>, u64) {
    const PIECES: [&[u8]; 4] = [b"GET /items/", b"?user=", b"&session=abcdef", b"; q=0.9"];
    let mut rng = Rng(0x5EED);
    let mut req = Request {
        strings: AVec::with_capacity_in(n, a),
        index: HashMap::with_hasher_in(DefaultHashBuilder::default(), a),
    };
    let mut sum = 0u64;
    for i in 0..n as u64 {
        let mut s = AVec::new_in(a);
        let len = 16 + rng.below(65) as usize;
        while s.len() < len {
            s.extend_from_slice(PIECES[(i as usize + s.len()) % 4]);
        }
        sum += s.len() as u64;
        req.strings.push(s);
        if i % 2 == 0 {
            let mut v = AVec::with_capacity_in(2 + rng.below(16) as usize, a);
            v.extend((0..v.capacity() as u64).map(|k| i ^ k));
            req.index.insert(i, v);
        }
        if i % 4 == 3 {
            sum += req
                .index
                .remove(&((i / 2) & !1))
                .map_or(0, |v| v.len() as u64);
            let old = &mut req.strings[i as usize / 2];
            sum += old.len() as u64;
            *old = AVec::new_in(a);
        }
    }
    sum += req.index.len() as u64;
    (black_box(req), sum)
}

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
