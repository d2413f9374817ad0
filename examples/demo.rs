//! The main demo: real Rust workloads timed on shardalloc and on the system allocator.
//!
//! ```text
//! cargo run --release --example demo            # 3 rounds, about 30-50 s on 2 cores
//! cargo run --release --example demo -- --rounds 1
//! ```
//!
//! A process has one global allocator, so the demo runs itself as child processes: one with
//! the system allocator, one with shardalloc, alternating for several rounds. Both children are
//! the same binary with the same global allocator wrapper, which reads the environment
//! variable `SHARDALLOC_DEMO_ALLOCATOR` once, at its first allocation, and then sends every
//! call to the chosen allocator; the dispatch costs both sides the same well-predicted branch.
//! Every block is allocated and freed by one allocator, from the first allocation of the
//! process to its exit. For each workload the table shows the best time over the rounds and
//! the ratio; each child also reports a checksum of what the workload computed, which must be
//! the same for both allocators.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, CStr};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use shardalloc::ShardAlloc;

const ENV_VAR: &str = "SHARDALLOC_DEMO_ALLOCATOR";

// ---- The switchable global allocator ------------------------------------------------------

const UNSET: u8 = 0;
const SYSTEM: u8 = 1;
const SHARD: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNSET);

struct Switch;

#[inline]
fn mode() -> u8 {
    match MODE.load(Ordering::Relaxed) {
        UNSET => init_mode(),
        m => m,
    }
}

/// Reads the choice from the environment without allocating (`std::env` would allocate, and
/// this runs inside the first allocation of the process).
#[cold]
fn init_mode() -> u8 {
    extern "C" {
        fn getenv(name: *const c_char) -> *const c_char;
    }
    // SAFETY: getenv with a NUL-terminated name; the result is only read, right away.
    let value = unsafe { getenv(c"SHARDALLOC_DEMO_ALLOCATOR".as_ptr()) };
    let chosen = if !value.is_null() && unsafe { CStr::from_ptr(value) } == c"shardalloc" {
        SHARD
    } else {
        SYSTEM
    };
    MODE.store(chosen, Ordering::Relaxed);
    chosen
}

unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mode() == SHARD {
            ShardAlloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mode() == SHARD {
            ShardAlloc.alloc_zeroed(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mode() == SHARD {
            ShardAlloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if mode() == SHARD {
            ShardAlloc.realloc(ptr, layout, new_size)
        } else {
            System.realloc(ptr, layout, new_size)
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

// ---- Workloads -----------------------------------------------------------------------------

/// A small deterministic generator, so both allocators see the same sequence of requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Vectors of many sizes, grown by push and dropped in batches.
fn vec_churn() -> u64 {
    let mut rng = Rng(1);
    let mut sum = 0u64;
    for _ in 0..200 {
        let mut batch: Vec<Vec<u32>> = Vec::new();
        for _ in 0..10_000 {
            let limit = if rng.below(16) == 0 { 2_000 } else { 40 };
            let len = rng.below(limit) as usize;
            let mut v = Vec::new();
            for k in 0..len {
                v.push(k as u32);
            }
            batch.push(v);
        }
        sum += batch.iter().map(|v| v.len() as u64).sum::<u64>();
    }
    sum
}

/// Formatting, splitting, joining and case mapping: many short-lived strings.
fn strings() -> u64 {
    let mut sum = 0u64;
    for round in 0..100 {
        let words: Vec<String> = (0..20_000)
            .map(|i| format!("word{}-{}", i * 7 % 1013, round))
            .collect();
        let line = words.join(" ");
        let upper = line.to_uppercase();
        let parts: Vec<&str> = upper.split(' ').filter(|w| w.len() > 8).collect();
        let rebuilt: Vec<String> = parts.iter().map(|p| p.replace('-', "_")).collect();
        sum += rebuilt.iter().map(|s| s.len() as u64).sum::<u64>();
    }
    sum
}

/// A HashMap used as a cache: a sliding window of keys inserted and removed.
fn hashmap_churn() -> u64 {
    let mut rng = Rng(2);
    let mut map: HashMap<String, Vec<u8>> = HashMap::new();
    let mut sum = 0u64;
    for i in 0..1_500_000u64 {
        let key = format!("k{}", rng.below(50_000));
        let len = 8 + rng.below(120) as usize;
        map.insert(key, vec![i as u8; len]);
        if i % 3 == 0 {
            let gone = format!("k{}", rng.below(50_000));
            if let Some(v) = map.remove(&gone) {
                sum += v.len() as u64;
            }
        }
    }
    sum + map.len() as u64
}

/// A BTreeMap of boxed byte slices with inserts, removals and range scans.
fn btreemap_churn() -> u64 {
    let mut rng = Rng(3);
    let mut map: BTreeMap<u64, Box<[u8]>> = BTreeMap::new();
    let mut sum = 0u64;
    for i in 0..1_500_000u64 {
        let key = rng.below(100_000);
        let len = 1 + rng.below(64) as usize;
        map.insert(key, vec![i as u8; len].into_boxed_slice());
        if i % 2 == 0 {
            map.remove(&rng.below(100_000));
        }
        if i % 10_000 == 0 {
            sum += map
                .range(key..)
                .take(100)
                .map(|(_, v)| v.len() as u64)
                .sum::<u64>();
        }
    }
    sum + map.len() as u64
}

/// Binary trees of boxes built, walked and dropped (the classic allocation benchmark shape).
fn binary_trees() -> u64 {
    struct Node {
        left: Option<Box<Node>>,
        right: Option<Box<Node>>,
    }
    fn build(depth: u32) -> Box<Node> {
        if depth == 0 {
            Box::new(Node {
                left: None,
                right: None,
            })
        } else {
            Box::new(Node {
                left: Some(build(depth - 1)),
                right: Some(build(depth - 1)),
            })
        }
    }
    fn count(node: &Node) -> u64 {
        1 + node.left.as_deref().map_or(0, count) + node.right.as_deref().map_or(0, count)
    }
    let long_lived = build(16);
    let mut sum = 0u64;
    for depth in (4..=16).step_by(2) {
        let iterations = 1u64 << (16 - depth + 5);
        for _ in 0..iterations {
            sum += count(&build(depth));
        }
    }
    sum + count(&long_lived)
}

/// Producer threads send freshly allocated messages through channels; consumer threads check
/// and drop them, so every message is freed by a thread other than the one that made it.
fn channels() -> u64 {
    const PAIRS: usize = 2;
    const MESSAGES: u64 = 1_000_000;
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for p in 0..PAIRS {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(1024);
        producers.push(thread::spawn(move || {
            let mut rng = Rng(10 + p as u64);
            for i in 0..MESSAGES {
                let len = if rng.below(64) == 0 {
                    1 + rng.below(16_384)
                } else {
                    1 + rng.below(256)
                };
                tx.send(vec![i as u8; len as usize]).unwrap();
            }
        }));
        consumers.push(thread::spawn(move || {
            rx.into_iter()
                .map(|m| m.len() as u64 + m[0] as u64)
                .sum::<u64>()
        }));
    }
    for p in producers {
        p.join().unwrap();
    }
    consumers.into_iter().map(|c| c.join().unwrap()).sum()
}

/// Independent small-object churn on four threads at once (more threads than cores).
fn parallel_churn() -> u64 {
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                let mut rng = Rng(100 + t);
                let mut live: Vec<Box<[u64]>> = Vec::new();
                let mut sum = 0u64;
                for i in 0..4_000_000u64 {
                    if live.len() < 2_000 || rng.below(2) == 0 {
                        let len = 1 + rng.below(32) as usize;
                        live.push(vec![i; len].into_boxed_slice());
                    } else {
                        let k = rng.below(live.len() as u64) as usize;
                        sum += live.swap_remove(k).len() as u64;
                    }
                }
                sum
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

type Workload = (&'static str, fn() -> u64);

const WORKLOADS: &[Workload] = &[
    ("vec push/drop", vec_churn),
    ("strings", strings),
    ("hashmap churn", hashmap_churn),
    ("btreemap churn", btreemap_churn),
    ("binary trees", binary_trees),
    ("channels, 4 threads", channels),
    ("parallel churn, 4 threads", parallel_churn),
];

// ---- Child: run the workloads on one allocator ----------------------------------------------

fn run_child() {
    let served_by_shardalloc = {
        let probe = Box::new(0u64);
        shardalloc::is_in_heap(&*probe)
    };
    println!("served_by_shardalloc {served_by_shardalloc}");
    for (i, (_, workload)) in WORKLOADS.iter().enumerate() {
        let start = Instant::now();
        let checksum = workload();
        let micros = start.elapsed().as_micros();
        println!("result {i} {micros} {checksum}");
    }
    println!("peak_rss_kib {}", peak_rss_kib().unwrap_or(0));
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---- Parent: run the children, print the table ----------------------------------------------

struct ChildRun {
    served_by_shardalloc: bool,
    micros: Vec<u128>,
    checksums: Vec<u64>,
    peak_rss_kib: u64,
}

fn spawn_child(allocator: &str) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(exe)
        .arg("--child")
        .env(ENV_VAR, allocator)
        .output()
        .expect("cannot start the demo's child process");
    if !output.status.success() {
        panic!(
            "{allocator} child failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout).expect("child output is UTF-8");
    let mut run = ChildRun {
        served_by_shardalloc: false,
        micros: vec![0; WORKLOADS.len()],
        checksums: vec![0; WORKLOADS.len()],
        peak_rss_kib: 0,
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["served_by_shardalloc", v] => run.served_by_shardalloc = *v == "true",
            ["result", i, micros, checksum] => {
                let i: usize = i.parse().unwrap();
                run.micros[i] = micros.parse().unwrap();
                run.checksums[i] = checksum.parse().unwrap();
            }
            ["peak_rss_kib", v] => run.peak_rss_kib = v.parse().unwrap(),
            _ => {}
        }
    }
    run
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        run_child();
        return;
    }
    let rounds: usize = match args.as_slice() {
        [] => 3,
        [flag, n] if flag == "--rounds" => n.parse().expect("--rounds takes a number"),
        _ => {
            eprintln!("usage: demo [--rounds N]");
            std::process::exit(2);
        }
    };

    println!(
        "shardalloc {} demo: {} workloads, {rounds} round(s) per allocator, best time of the rounds",
        shardalloc::version(),
        WORKLOADS.len()
    );
    let mut best_system = vec![u128::MAX; WORKLOADS.len()];
    let mut best_shard = vec![u128::MAX; WORKLOADS.len()];
    let mut peak_system = 0;
    let mut peak_shard = 0;
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a cooler or warmer machine.
        let order: [&str; 2] = if round % 2 == 0 {
            ["system", "shardalloc"]
        } else {
            ["shardalloc", "system"]
        };
        let mut runs = Vec::new();
        for allocator in order {
            eprint!("  round {}/{rounds}: {allocator}...", round + 1);
            let run = spawn_child(allocator);
            eprintln!(" done");
            assert_eq!(
                run.served_by_shardalloc,
                allocator == "shardalloc",
                "the {allocator} child was served by the wrong allocator"
            );
            runs.push((allocator, run));
        }
        let (a, b) = (&runs[0].1, &runs[1].1);
        assert_eq!(
            a.checksums, b.checksums,
            "the workloads computed different results"
        );
        for (allocator, run) in &runs {
            let (best, peak) = if *allocator == "system" {
                (&mut best_system, &mut peak_system)
            } else {
                (&mut best_shard, &mut peak_shard)
            };
            for (b, &m) in best.iter_mut().zip(&run.micros) {
                *b = (*b).min(m);
            }
            *peak = (*peak).max(run.peak_rss_kib);
        }
    }

    println!();
    println!(
        "{:<28} {:>12} {:>16} {:>12}",
        "workload", "system (ms)", "shardalloc (ms)", "ratio"
    );
    println!("{}", "-".repeat(71));
    let mut log_sum = 0.0;
    for (i, (name, _)) in WORKLOADS.iter().enumerate() {
        let sys = best_system[i] as f64 / 1000.0;
        let shard = best_shard[i] as f64 / 1000.0;
        let ratio = sys / shard;
        log_sum += ratio.ln();
        println!("{name:<28} {sys:>12.1} {shard:>16.1} {ratio:>11.2}x");
    }
    println!("{}", "-".repeat(71));
    let geomean = (log_sum / WORKLOADS.len() as f64).exp();
    println!(
        "{:<28} {:>12} {:>16} {:>11.2}x",
        "geometric mean", "", "", geomean
    );
    println!(
        "{:<28} {:>12.1} {:>16.1}",
        "peak RSS of a run (MiB)",
        peak_system as f64 / 1024.0,
        peak_shard as f64 / 1024.0
    );
    println!();
    println!("ratio = system time / shardalloc time: above 1 means shardalloc was faster.");
    println!("Results of every workload were identical on both allocators.");
}
