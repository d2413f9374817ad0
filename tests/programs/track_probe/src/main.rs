//! Misuses memory, or uses it cleanly, according to its argument, with `ShardAlloc` as the
//! global allocator; tests/track_valgrind.rs runs it under valgrind's memcheck.
//!
//! - `use-after-free`: reads a freed block
//! - `leak`: loses the only pointers to a few blocks
//! - `clean`: vectors, strings, a hash map and threads, no misuse

use std::collections::HashMap;
use std::hint::black_box;
use std::thread;

use shardalloc::ShardAlloc;

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// Frees a boxed value, then reads it through the dangling pointer.
#[inline(never)]
fn use_after_free() -> u64 {
    let p = Box::into_raw(Box::new(black_box(0x5eed_u64)));
    // SAFETY: `p` came from Box::into_raw just above; this frees it once.
    drop(unsafe { Box::from_raw(p) });
    // SAFETY: none: the misuse under test. The volatile read keeps the compiler from
    // dropping or moving it; the allocator does not unmap the memory, so it does not fault.
    unsafe { std::ptr::read_volatile(p) }
}

/// Allocates blocks and forgets them; the only pointer to each is overwritten by the next, so
/// at most the last may still be found on the stack.
#[inline(never)]
fn leak() {
    for i in 0..8u8 {
        let lost = black_box(vec![i; 48]);
        std::mem::forget(lost);
    }
}

/// Ordinary work: growing vectors (realloc), strings, a hash map, blocks freed by other threads.
fn clean() -> usize {
    let mut total = 0;
    let mut map: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..2_000u32 {
        map.entry(format!("key{}", i % 300)).or_default().push(i);
    }
    total += map.values().map(Vec::len).sum::<usize>();
    let mut big: Vec<u64> = Vec::new();
    for i in 0..200_000u64 {
        big.push(i); // grows through the large sizes, some of them in place
    }
    total += big.len();
    drop(big);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let strings: Vec<String> = (0..1_000).map(|i| format!("{t}:{i}")).collect();
                strings // freed by the main thread: cross-thread frees
            })
        })
        .collect();
    for handle in handles {
        let strings = handle.join().expect("worker panicked");
        total += strings.iter().map(String::len).sum::<usize>();
    }
    let zeroed = vec![0u8; 100_000];
    total += zeroed.iter().filter(|&&b| b == 0).count();
    total
}

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    match case.as_str() {
        "use-after-free" => println!("read {:#x}", use_after_free()),
        "leak" => leak(),
        "clean" => println!("total {}", clean()),
        _ => {
            eprintln!("usage: track_probe use-after-free|leak|clean");
            std::process::exit(2);
        }
    }
}
