//! Free memory goes back to the OS: about 1.5 GiB allocated in small and medium blocks on four
//! threads, then freed, must leave the resident set size (RSS) below 10% of its peak.
//!
//! The test follows what is documented (README, "Memory: when it goes back to the OS"):
//!
//! 1. Threads that free everything and exit: their empty segments are unmapped at exit, except
//!    the few kept in the segment cache, whose free memory the housekeeper thread gives back
//!    within the purge delay. RSS must fall below 10% of the peak within the purge delay
//!    plus 1 s.
//! 2. Threads that free everything and live on, blocked, without any `collect` call: the
//!    housekeeper gives their free memory back; RSS must fall below 10% of the peak within
//!    eight purge delays plus 1 s, while the threads are still alive. (These threads take
//!    the memory phase 1 gave back, right after it went back: churn, for which a thread's
//!    delay grows up to eight times the option.)
//!
//! The segment cache is as large as it goes (64 segments, 2 GiB) so that empty segments are
//! kept rather than unmapped: only purging gives their memory back, and with purging off
//! (`SHARDALLOC_PURGE_DELAY=-1 cargo test --test rss`) the test fails.
//!
//! RSS is process-wide, so this file holds one test and runs the phases in order. The numbers
//! it measured are printed (`cargo test --test rss -- --nocapture`).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use shardalloc::ShardAlloc;

mod common;
use common::{mib, rss, this_test_again};

/// The purge delay of the run, unless the environment sets one.
const PURGE_DELAY_MS: u64 = 50;

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

const CHILD_VAR: &str = "RSS_TEST_CHILD";

const THREADS: usize = 4;
/// Bytes each thread allocates: 4 x 384 MiB = 1.5 GiB.
const BYTES_PER_THREAD: usize = 384 << 20;

/// Allocate `BYTES_PER_THREAD` in blocks cycling through small (16 B - 8 KiB) and medium
/// (8 - 64 KiB) sizes, touching every 4 KiB of each block so the memory is really resident.
fn allocate(seed: usize) -> Vec<Box<[u8]>> {
    const SIZES: [usize; 12] = [
        16, 48, 128, 400, 1000, 3000, 8000, 12_000, 20_000, 33_000, 50_000, 64_000,
    ];
    let mut blocks = Vec::new();
    let mut total = 0;
    let mut i = seed;
    while total < BYTES_PER_THREAD {
        let size = SIZES[i % SIZES.len()];
        i += 1;
        let mut b = vec![0u8; size].into_boxed_slice();
        for off in (0..size).step_by(4096) {
            b[off] = 1;
        }
        total += size;
        blocks.push(b);
    }
    blocks
}

/// Runs the phases in a child process whose options come from the environment (set before
/// its first allocation): the segment cache at 64, the purge delay at 50 ms unless the
/// environment of this test sets `SHARDALLOC_PURGE_DELAY` (to -1, say, to see it fail).
#[test]
fn rss_falls_after_free() {
    if std::env::var_os(CHILD_VAR).is_some() {
        return phases();
    }
    let delay = std::env::var("SHARDALLOC_PURGE_DELAY").unwrap_or(PURGE_DELAY_MS.to_string());
    let out = this_test_again("rss_falls_after_free")
        .env(CHILD_VAR, "1")
        .env("SHARDALLOC_SEGMENT_CACHE", "64")
        .env("SHARDALLOC_PURGE_DELAY", &delay)
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("phase") || l.starts_with("  stats"))
    {
        println!("{line}");
    }
    assert!(
        out.status.success(),
        "purge delay {delay} ms:\n{stdout}\n{stderr}"
    );
}

fn phases() {
    let base = rss();

    // Phase 1: threads allocate, free everything and exit.
    let start = Barrier::new(THREADS + 1);
    let allocated = Barrier::new(THREADS + 1);
    let peak = thread::scope(|s| {
        for t in 0..THREADS {
            let (start, allocated) = (&start, &allocated);
            s.spawn(move || {
                start.wait();
                let blocks = allocate(t);
                allocated.wait(); // main reads the peak
                allocated.wait();
                drop(blocks);
            });
        }
        start.wait();
        allocated.wait();
        let peak = rss();
        allocated.wait();
        peak
    });
    let freed_at = Instant::now();
    assert!(
        peak - base > (BYTES_PER_THREAD * THREADS) * 9 / 10,
        "the allocations were not resident: peak {:.0} MiB, base {:.0} MiB",
        mib(peak),
        mib(base)
    );
    let limit = peak / 10;
    let delay_ms = shardalloc::options::get(shardalloc::options::Opt::PurgeDelay).max(0) as u64;
    let deadline = Duration::from_millis(delay_ms) + Duration::from_secs(1);
    // phase 2's threads may have their delay raised (see above)
    let deadline_churn = Duration::from_millis(8 * delay_ms) + Duration::from_secs(1);
    let after_exit = rss();
    let mut now_rss = after_exit;
    while now_rss >= limit && freed_at.elapsed() < deadline {
        thread::sleep(Duration::from_millis(5));
        now_rss = rss();
    }
    let waited = freed_at.elapsed();
    println!(
        "phase 1 (threads free and exit): base {:.0} MiB, peak {:.0} MiB, right after exit \
         {:.0} MiB, after {:?} {:.0} MiB (limit {:.0} MiB)",
        mib(base),
        mib(peak),
        mib(after_exit),
        waited,
        mib(now_rss),
        mib(limit)
    );
    println!("  stats: {:?}", shardalloc::stats());
    assert!(
        now_rss < limit,
        "RSS {:.0} MiB is not below 10% of the peak {:.0} MiB {:?} after the threads exited",
        mib(now_rss),
        mib(peak),
        waited
    );

    // Phase 2: threads allocate and free, and live on, blocked; no collect.
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let blocks = allocate(t + 7);
                barrier.wait(); // main reads the peak
                barrier.wait();
                drop(blocks);
                barrier.wait(); // main reads RSS while this thread is alive
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let peak = rss();
    barrier.wait();
    barrier.wait(); // every thread freed its blocks and waits, alive
    let freed_at = Instant::now();
    let mut now_rss = rss();
    while now_rss >= peak / 10 && freed_at.elapsed() < deadline_churn {
        thread::sleep(Duration::from_millis(5));
        now_rss = rss();
    }
    let waited = freed_at.elapsed();
    println!(
        "phase 2 (threads free and stay alive, blocked): peak {:.0} MiB, after {:?} {:.0} MiB",
        mib(peak),
        waited,
        mib(now_rss)
    );
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert!(
        now_rss < peak / 10,
        "RSS {:.0} MiB is not below 10% of the peak {:.0} MiB {:?} after the threads freed \
         everything (they live on)",
        mib(now_rss),
        mib(peak),
        waited
    );
}
