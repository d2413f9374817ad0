//! Memory comes back while threads live: the shape of a service whose worker threads live for
//! the whole process, hand blocks to each other, and go idle between bursts.
//!
//! Two threads allocate about 800 MiB in 16 B - 64 KiB blocks, hand half of their blocks to
//! the other thread, and each frees what it holds, so half of every thread's blocks are freed
//! by the other thread. Then, per case:
//!
//! - `busy`: both threads keep doing small allocations and frees (the fast path);
//! - `idle`: both threads block on a channel and allocate nothing;
//! - `exited`: one thread allocates everything, hands it all over and exits; the other frees
//!   it all and blocks.
//!
//! In each case the resident set (VmRSS) and `stats().committed` must fall to at most
//! max(10% of the peak, 64 MiB) within one second of the last free, in the default
//! configuration, with no `collect` call. With purging off (`SHARDALLOC_PURGE_DELAY=-1`) the
//! memory stays: `purging_off_keeps_memory` checks that the measurement sees that.
//!
//! RSS is process-wide, so each case runs in a child process of its own (this test binary,
//! run again with `MEMORY_BACK_CASE` set). Every block's content is verified before it is
//! freed.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use shardalloc::ShardAlloc;

mod common;
use common::{mib, rss, this_test_again};

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

const CASE_VAR: &str = "MEMORY_BACK_CASE";
/// Bytes each allocating thread allocates.
const BYTES_PER_THREAD: usize = 400 << 20;
const SIZES: [usize; 13] = [
    16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];

/// A block whose content names it: its index in the first 8 bytes, then `fill` bytes.
struct Block {
    data: Box<[u8]>,
    index: u64,
}

fn fill_byte(index: u64) -> u8 {
    (index % 251) as u8
}

fn make_block(index: u64, size: usize, pattern: &[[u8; 65536]]) -> Block {
    let mut data = vec![0u8; size].into_boxed_slice();
    data.copy_from_slice(&pattern[(index % 251) as usize][..size]);
    data[..8].copy_from_slice(&index.to_le_bytes());
    Block { data, index }
}

/// Checks the content, then frees the block.
fn free_block(block: Block, pattern: &[[u8; 65536]]) {
    let d = &block.data;
    assert_eq!(
        d[..8],
        block.index.to_le_bytes(),
        "block {} lost its index",
        block.index
    );
    let expect = &pattern[(block.index % 251) as usize][8..d.len()];
    assert!(&d[8..] == expect, "block {} lost its content", block.index);
}

/// 251 buffers of 64 KiB, buffer i filled with `fill_byte(i)`: content is copied, compared.
fn patterns() -> Vec<[u8; 65536]> {
    (0..251u64).map(|i| [fill_byte(i); 65536]).collect()
}

fn allocate(seed: u64, pattern: &[[u8; 65536]]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut total = 0;
    let mut i = seed * 1_000_000_007;
    while total < BYTES_PER_THREAD {
        let size = SIZES[(i % SIZES.len() as u64) as usize];
        blocks.push(make_block(i, size, pattern));
        total += size;
        i += 1;
    }
    blocks
}

/// Both sides of the exchange: keeps the even-indexed blocks, sends the odd ones.
fn split(blocks: Vec<Block>) -> (Vec<Block>, Vec<Block>) {
    blocks.into_iter().partition(|b| b.index % 2 == 0)
}

/// Polls until RSS and committed are both at most `limit` or `within` passed; returns the
/// last values and how long it took.
fn wait_for_return(limit: usize, within: Duration) -> (usize, usize, Duration) {
    let start = Instant::now();
    loop {
        let (r, c) = (rss(), shardalloc::stats().committed);
        if (r <= limit && c <= limit) || start.elapsed() >= within {
            return (r, c, start.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// How often the thread named `shardalloc-hk` was switched to (it wakes up once per switch),
/// and its state letter.
fn housekeeper_wakeups() -> Option<(u64, char)> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "shardalloc-hk" {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |name: &str| -> Option<&str> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)
        };
        let switches = field("voluntary_ctxt_switches:")?.parse::<u64>().ok()?
            + field("nonvoluntary_ctxt_switches:")?.parse::<u64>().ok()?;
        return Some((switches, field("State:")?.chars().next()?));
    }
    None
}

/// Once the memory is back and nothing is freed any more, the housekeeper sleeps: no thread of
/// ours runs while no memory waits to go back (it does not even wake up to look). Its last
/// work comes at a time of its own (the last purges fall due up to 8 purge delays after their
/// free where memory was wanted again soon; an idle thread's retired pages go back at the
/// second look, 4-8 purge delays after; the empty segments cached beyond the cache's size go
/// back 40 purge delays, 1 s, after they were cached), so the test waits for a quiet half
/// second, for up to 5 s: a housekeeper that wakes up on its own never gets one.
fn housekeeper_sleeps() {
    let start = Instant::now();
    let (mut before, _) = housekeeper_wakeups().expect("the housekeeper thread runs");
    loop {
        thread::sleep(Duration::from_millis(500));
        let (after, state) = housekeeper_wakeups().expect("the housekeeper thread runs");
        if after == before && state == 'S' {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the housekeeper woke up while nothing was freed: {} times in the last 0.5 s, \
             state {state}",
            after - before
        );
        before = after;
    }
}

enum Msg {
    Blocks(Vec<Block>),
    Done,
}

/// Runs one case in this process; returns (peak, rss, committed, waited).
fn run_case(case: &str) -> (usize, usize, usize, Duration) {
    let pattern: &'static [[u8; 65536]] = Box::leak(patterns().into_boxed_slice());
    let (to_main, from_workers) = mpsc::channel::<()>();
    let mut handles = Vec::new();
    let mut senders = Vec::new();
    let peak;
    match case {
        "busy" | "idle" => {
            let (tx_a, rx_a) = mpsc::channel::<Msg>();
            let (tx_b, rx_b) = mpsc::channel::<Msg>();
            let (go_tx, go_rx) = (vec![tx_a.clone(), tx_b.clone()], vec![rx_a, rx_b]);
            let busy = case == "busy";
            for (t, rx) in go_rx.into_iter().enumerate() {
                let other = go_tx[1 - t].clone();
                let to_main = to_main.clone();
                handles.push(thread::spawn(move || {
                    let (keep, give) = split(allocate(t as u64 + 1, pattern));
                    to_main.send(()).unwrap(); // allocated: main reads the peak
                    let Msg::Blocks(_) = rx.recv().unwrap() else {
                        panic!()
                    }; // go
                    other.send(Msg::Blocks(give)).unwrap();
                    for b in keep {
                        free_block(b, pattern);
                    }
                    let Msg::Blocks(got) = rx.recv().unwrap() else {
                        panic!()
                    };
                    for b in got {
                        free_block(b, pattern); // a cross-thread free
                    }
                    to_main.send(()).unwrap(); // freed
                    if busy {
                        let mut n = 0u64;
                        while rx.try_recv().is_err() {
                            let small: Vec<Box<[u8; 48]>> =
                                (0..64).map(|_| Box::new([1; 48])).collect();
                            n += small.len() as u64;
                            drop(small);
                            thread::sleep(Duration::from_millis(1));
                        }
                        assert!(n > 0);
                    } else {
                        let _ = rx.recv(); // blocks, allocating nothing
                    }
                }));
            }
            senders = go_tx;
            from_workers.recv().unwrap();
            from_workers.recv().unwrap();
            peak = rss();
            for s in &senders {
                s.send(Msg::Blocks(Vec::new())).unwrap();
            }
        }
        "exited" => {
            let (tx, rx) = mpsc::channel::<Msg>();
            let producer = thread::spawn(move || {
                tx.send(Msg::Blocks(allocate(3, pattern))).unwrap();
            });
            let Msg::Blocks(blocks) = rx.recv().unwrap() else {
                panic!()
            };
            peak = rss();
            producer.join().unwrap(); // exited before any of its blocks is freed
            let (to_main2, done) = mpsc::channel::<()>();
            let (tx_free, rx_free) = mpsc::channel::<Msg>();
            handles.push(thread::spawn(move || {
                let Msg::Blocks(blocks) = rx_free.recv().unwrap() else {
                    panic!()
                };
                for b in blocks {
                    free_block(b, pattern);
                }
                to_main2.send(()).unwrap();
                let _ = rx_free.recv(); // blocks
            }));
            tx_free.send(Msg::Blocks(blocks)).unwrap();
            done.recv().unwrap();
            senders.push(tx_free);
            to_main.send(()).unwrap();
            to_main.send(()).unwrap();
        }
        _ => panic!("unknown case {case}"),
    }
    if case != "exited" {
        from_workers.recv().unwrap();
        from_workers.recv().unwrap(); // both threads freed everything
    }
    let limit = (peak / 10).max(64 << 20);
    let (r, c, waited) = wait_for_return(limit, Duration::from_secs(1));
    if case == "idle" {
        housekeeper_sleeps();
    }
    for s in &senders {
        let _ = s.send(Msg::Done);
    }
    for h in handles {
        h.join().unwrap();
    }
    (peak, r, c, waited)
}

/// Runs `case` in a child process, returns its report line.
fn child(case: &str, purge_delay: Option<&str>) -> (bool, String) {
    let mut cmd = this_test_again("child_case");
    cmd.env(CASE_VAR, case);
    if let Some(d) = purge_delay {
        cmd.env("SHARDALLOC_PURGE_DELAY", d);
    }
    let out = cmd.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = stdout
        .lines()
        .find(|l| l.starts_with("case "))
        .unwrap_or_default()
        .to_owned();
    (
        out.status.success(),
        format!("{report}\n{stdout}\n{stderr}"),
    )
}

/// The body of a child: runs the case named by `MEMORY_BACK_CASE` (nothing without it).
#[test]
fn child_case() {
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    let (peak, r, c, waited) = run_case(&case);
    let limit = (peak / 10).max(64 << 20);
    println!(
        "case {case}: peak RSS {:.0} MiB; {:?} after the last free: RSS {:.0} MiB, committed \
         {:.0} MiB (limit {:.0} MiB)",
        mib(peak),
        waited,
        mib(r),
        mib(c),
        mib(limit)
    );
    assert!(
        peak > BYTES_PER_THREAD,
        "the blocks were not resident: peak {peak}"
    );
    assert!(
        r <= limit && c <= limit,
        "memory did not come back within 1 s: RSS {:.0} MiB, committed {:.0} MiB, limit {:.0} MiB",
        mib(r),
        mib(c),
        mib(limit)
    );
}

/// The cases one after another (each in its own process): run side by side, they would
/// compete for the two cores and the memory of the machine.
#[test]
fn memory_comes_back_while_threads_live() {
    for case in ["busy", "idle", "exited"] {
        let (ok, report) = child(case, None);
        println!("{}", report.lines().next().unwrap_or_default());
        assert!(ok, "case {case} failed:\n{report}");
    }
    // The measurement can fail: with purging off, the same workload keeps its memory.
    let (ok, report) = child("idle", Some("-1"));
    println!("purging off: {}", report.lines().next().unwrap_or_default());
    assert!(
        !ok,
        "with purging off the memory came back anyway:\n{report}"
    );
    assert!(report.contains("memory did not come back"), "{report}");
}
