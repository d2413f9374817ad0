//! The cost of `Configured`'s "options applied" flag on the allocation fast path, counted
//! with callgrind (instructions do not depend on the machine's load):
//!
//! ```sh
//! cargo build --release --example config_fastpath
//! for m in plain configured; do for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$m.$n \
//!     target/release/examples/config_fastpath $m $n; done; done
//! ```
//!
//! Each mode allocates and frees one 16-byte `Layout` N times through `GlobalAlloc`, either on
//! the plain `ShardAlloc` or on a `Configured` one (the global allocator of this program, so
//! its flag is set before the loop). The difference of the totals for N and 2N divided by N is
//! the cost per pair, loop included (README, "Memory: purging and options").

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

use shardalloc::{Config, Configured, ShardAlloc};

#[global_allocator]
static CONFIGURED: Configured = ShardAlloc::with_config(Config::new().purge_delay_ms(25));

#[inline(never)]
fn pairs<A: GlobalAlloc>(a: &A, n: usize) {
    let layout = Layout::from_size_align(16, 8).unwrap();
    for _ in 0..n {
        // SAFETY: a valid layout; the block is freed with it.
        unsafe {
            let p = a.alloc(black_box(layout));
            a.dealloc(black_box(p), layout);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).map_or(100_000, |s| s.parse().expect("N"));
    let keep = Box::new([1u64; 2]); // 16 B: the page stays in use, as in the C `held` case
    match args.get(1).map(String::as_str) {
        Some("plain") => pairs(&ShardAlloc, n),
        Some("configured") => pairs(&CONFIGURED, n),
        _ => panic!("usage: config_fastpath plain|configured [N]"),
    }
    drop(keep);
}
