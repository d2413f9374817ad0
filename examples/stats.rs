//! A multi-threaded program that reports the allocator's statistics while it runs.
//!
//! ```sh
//! cargo run --release --example stats            # about 2 s
//! cargo run --release --example stats -- 10      # 10 reports
//! ```
//!
//! Four worker threads build and drop maps and vectors of varying size; the main thread prints
//! a one-line summary of `shardalloc::stats()` and `shardalloc::process_info()` every 200 ms,
//! then the full `Debug` form of both at the end, after the workers have exited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use shardalloc::{Config, Configured, ShardAlloc};

#[global_allocator]
static GLOBAL: Configured = ShardAlloc::with_config(Config::new().purge_delay_ms(50));

fn worker(id: u64, stop: &AtomicBool) -> u64 {
    let mut checksum = 0u64;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // The working set grows and shrinks over eight rounds: 1k to 128k entries.
        let n = 1000 << (round % 8);
        let map: HashMap<u64, Vec<u8>> = (0..n)
            .map(|i| (i, vec![(i ^ id) as u8; (i % 200) as usize + 8]))
            .collect();
        checksum = checksum.wrapping_add(map.values().map(|v| v[0] as u64).sum::<u64>());
        round += 1;
    }
    checksum
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    let reports: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("the number of reports"))
        .unwrap_or(10);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|id| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || worker(id, &stop))
        })
        .collect();

    // One snapshot reused: after the first refresh, polling allocates nothing.
    let mut stats = shardalloc::Stats::default();
    for _ in 0..reports {
        thread::sleep(Duration::from_millis(200));
        stats.refresh();
        let info = shardalloc::process_info();
        println!(
            "in use {:7.1} MiB  committed {:7.1} MiB (peak {:7.1})  reserved {:7.1} MiB  \
             segments {:3}  threads {}  purges {:6}  rss {:7.1} MiB  faults {}",
            mib(stats.in_use),
            mib(stats.committed),
            mib(stats.committed_peak),
            mib(stats.reserved),
            stats.segments,
            stats.threads,
            stats.purges,
            mib(info.current_rss),
            info.page_faults,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let checksum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    shardalloc::collect(true);
    println!("workers done (checksum {checksum}); after collect(true):");
    println!("{:#?}", shardalloc::stats());
    println!("{:#?}", shardalloc::process_info());
}
