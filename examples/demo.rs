//! The main demo, the headline comparison: real Rust workloads timed on shardalloc, the system
//! allocator, mimalloc and jemalloc.
//!
//! ```text
//! cargo run --release --example demo            # 3 rounds, under a minute on 2 cores
//! cargo run --release --example demo -- --rounds 1
//! ```
//!
//! A process has one global allocator, so the demo runs itself as child processes, one per
//! allocator, in an order that rotates from round to round. All children are the same binary
//! with the same global allocator wrapper, which reads the environment variable
//! `SHARDALLOC_DEMO_ALLOCATOR` once, at its first allocation, and then sends every call to the
//! chosen allocator; the dispatch costs every allocator the same well-predicted branch. Every
//! block is allocated and freed by one allocator, from the first allocation of the process to
//! its exit. For each workload the table shows the best time over the rounds and shardalloc's
//! speed relative to each peer; each child also reports a checksum of what the workload
//! computed, which must be the same for every allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, CStr};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use mimalloc::MiMalloc;
use shardalloc::ShardAlloc;
use tikv_jemallocator::Jemalloc;

const ENV_VAR: &str = "SHARDALLOC_DEMO_ALLOCATOR";

/// The allocators, by the name the environment variable takes; the first is the baseline.
const ALLOCATORS: [&str; 4] = ["system", "shardalloc", "mimalloc", "jemalloc"];

// ---- The switchable global allocator ------------------------------------------------------

const UNSET: u8 = 0;
const SYSTEM: u8 = 1;
const SHARD: u8 = 2;
const MIMALLOC: u8 = 3;
const JEMALLOC: u8 = 4;

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
    let value = if value.is_null() {
        c""
    } else {
        unsafe { CStr::from_ptr(value) }
    };
    let chosen = if value == c"shardalloc" {
        SHARD
    } else if value == c"mimalloc" {
        MIMALLOC
    } else if value == c"jemalloc" {
        JEMALLOC
    } else {
        SYSTEM
    };
    MODE.store(chosen, Ordering::Relaxed);
    chosen
}

/// Sends one `GlobalAlloc` call to the chosen allocator.
macro_rules! dispatch {
    ($method:ident($($arg:expr),*)) => {
        match mode() {
            SHARD => ShardAlloc.$method($($arg),*),
            MIMALLOC => MiMalloc.$method($($arg),*),
            JEMALLOC => Jemalloc.$method($($arg),*),
            _ => System.$method($($arg),*),
        }
    };
}

unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        dispatch!(alloc(layout))
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        dispatch!(alloc_zeroed(layout))
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        dispatch!(dealloc(ptr, layout))
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        dispatch!(realloc(ptr, layout, new_size))
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

/// Which allocator served a fresh box: shardalloc and mimalloc can tell whether a pointer is
/// theirs; a block that is neither's came from the system allocator or jemalloc, which the
/// parent tells apart by the mode it chose.
fn served_by() -> &'static str {
    let probe = Box::new(0u64);
    let p: *const u64 = &*probe;
    if shardalloc::is_in_heap(p) {
        "shardalloc"
    } else if unsafe { libmimalloc_sys::mi_is_in_heap_region(p.cast()) } {
        "mimalloc"
    } else {
        "other"
    }
}

fn run_child() {
    println!("served_by {}", served_by());
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
    served_by: String,
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
        served_by: String::new(),
        micros: vec![0; WORKLOADS.len()],
        checksums: vec![0; WORKLOADS.len()],
        peak_rss_kib: 0,
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["served_by", v] => run.served_by = v.to_string(),
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
        "shardalloc {} demo: {} workloads on {} allocators, {rounds} round(s), best time of the rounds",
        shardalloc::version(),
        WORKLOADS.len(),
        ALLOCATORS.len()
    );
    let n = ALLOCATORS.len();
    let mut best = vec![vec![u128::MAX; WORKLOADS.len()]; n];
    let mut peak = vec![0u64; n];
    let mut reference: Option<Vec<u64>> = None;
    for round in 0..rounds {
        // Rotate the order, so no allocator always runs first on a cooler machine.
        eprint!("  round {}/{rounds}:", round + 1);
        for k in 0..n {
            let a = (round + k) % n;
            let allocator = ALLOCATORS[a];
            eprint!(" {allocator}");
            let run = spawn_child(allocator);
            let expected = match allocator {
                "shardalloc" | "mimalloc" => allocator,
                _ => "other",
            };
            assert_eq!(
                run.served_by, expected,
                "the {allocator} child was served by the wrong allocator"
            );
            match &reference {
                None => reference = Some(run.checksums.clone()),
                Some(r) => assert_eq!(
                    r, &run.checksums,
                    "the workloads computed different results on {allocator}"
                ),
            }
            for (b, &m) in best[a].iter_mut().zip(&run.micros) {
                *b = (*b).min(m);
            }
            peak[a] = peak[a].max(run.peak_rss_kib);
        }
        eprintln!();
    }

    // Columns: each allocator's best time, then shardalloc's speed relative to each peer.
    let shard = ALLOCATORS.iter().position(|&a| a == "shardalloc").unwrap();
    let peers: Vec<usize> = (0..n).filter(|&a| a != shard).collect();
    println!();
    print!("{:<26}", "workload (best ms)");
    for a in ALLOCATORS {
        print!(" {a:>10}");
    }
    for &p in &peers {
        print!(" {:>8}", format!("vs {}", &ALLOCATORS[p][..3]));
    }
    println!();
    let width = 26 + 11 * n + 9 * peers.len();
    println!("{}", "-".repeat(width));
    let mut log_sum = vec![0.0; n];
    for (i, (name, _)) in WORKLOADS.iter().enumerate() {
        print!("{name:<26}");
        for times in &best {
            print!(" {:>10.1}", times[i] as f64 / 1000.0);
        }
        for &p in &peers {
            let ratio = best[p][i] as f64 / best[shard][i] as f64;
            log_sum[p] += ratio.ln();
            print!(" {:>7.2}x", ratio);
        }
        println!();
    }
    println!("{}", "-".repeat(width));
    print!("{:<26}", "geometric mean");
    print!("{}", " ".repeat(11 * n));
    for &p in &peers {
        print!(" {:>7.2}x", (log_sum[p] / WORKLOADS.len() as f64).exp());
    }
    println!();
    print!("{:<26}", "peak RSS of a run (MiB)");
    for kib in &peak {
        print!(" {:>10.1}", *kib as f64 / 1024.0);
    }
    println!();
    println!();
    println!("vs X = X's time / shardalloc's time: above 1 means shardalloc was faster than X.");
    println!("Results of every workload were identical on every allocator.");
}
