//! Threads on `ShardAlloc` as the global allocator: values made on one thread and dropped on
//! another (cross-thread frees), blocks that outlive the thread that made them (abandoned
//! memory), and 256+ threads at once.

use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use shardalloc::ShardAlloc;
#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// Contents that identify their maker, so a block handed to the wrong owner shows.
fn make_item(thread: usize, i: usize) -> Vec<u64> {
    let len = 1 + (thread * 7 + i * 13) % 300;
    (0..len)
        .map(|k| (thread as u64) << 32 | (i as u64) << 12 | k as u64)
        .collect()
}

fn check_item(item: &[u64], thread: usize, i: usize) {
    assert_eq!(
        item,
        make_item(thread, i).as_slice(),
        "item {i} of thread {thread} changed"
    );
}

#[test]
fn values_dropped_on_other_threads() {
    const PRODUCERS: usize = 4;
    const ITEMS: usize = 20_000;
    let (tx, rx) = mpsc::channel::<(usize, usize, Vec<u64>, Box<String>)>();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..ITEMS {
                    tx.send((t, i, make_item(t, i), Box::new(format!("{t}/{i}"))))
                        .unwrap();
                }
            })
        })
        .collect();
    drop(tx);

    // The consumer checks and drops everything: every free here is a cross-thread free, many of
    // them into heaps whose threads have already exited.
    let consumer = thread::spawn(move || {
        let mut count = 0;
        for (t, i, item, label) in rx {
            check_item(&item, t, i);
            assert_eq!(*label, format!("{t}/{i}"));
            count += 1;
        }
        count
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), PRODUCERS * ITEMS);
}

#[test]
fn blocks_outlive_the_thread_that_made_them() {
    // Each thread allocates, returns some of it and exits; the main thread checks and frees
    // the blocks afterwards, then new threads reuse the memory.
    for round in 0..3 {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                thread::spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..2_000 {
                        let item = make_item(t + round * 100, i);
                        if i % 3 == 0 {
                            kept.push((i, item));
                        }
                    }
                    kept
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let kept = h.join().unwrap();
            assert_eq!(kept.len(), 667);
            for (i, item) in &kept {
                check_item(item, t + round * 100, *i);
            }
        }
    }
}

#[test]
fn shared_structure_mutated_by_many_threads() {
    let map = Arc::new(Mutex::new(
        std::collections::HashMap::<usize, Vec<u64>>::new(),
    ));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                for i in 0..5_000 {
                    let key = (t * 31 + i) % 1_000;
                    // Replacing frees the previous value, often allocated by another thread.
                    map.lock().unwrap().insert(key, make_item(t, i));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let map = map.lock().unwrap();
    assert_eq!(map.len(), 1_000);
    assert!(map.values().all(|v| !v.is_empty()));
}

#[test]
fn three_hundred_threads() {
    const THREADS: usize = 300;
    let barrier = Arc::new(Barrier::new(THREADS));
    let (tx, rx) = mpsc::channel::<(usize, Vec<u64>)>();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            let tx = tx.clone();
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mine: Vec<Vec<u64>> = (0..50).map(|i| make_item(t, i)).collect();
                    // All threads alive at once, each holding memory.
                    barrier.wait();
                    for (i, item) in mine.iter().enumerate() {
                        check_item(item, t, i);
                    }
                    // Hand one block to the main thread; the rest are freed at exit.
                    tx.send((t, make_item(t, 1_000))).unwrap();
                    mine.len()
                })
                .unwrap()
        })
        .collect();
    drop(tx);
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, THREADS * 50);

    let mut seen = vec![false; THREADS];
    for (t, item) in rx {
        check_item(&item, t, 1_000);
        seen[t] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn thread_churn() {
    // Many short-lived threads, one after another in small groups: each thread's heap is set up
    // and torn down, and its memory must be reused rather than piling up.
    for group in 0..64 {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    let v: Vec<Vec<u64>> = (0..200).map(|i| make_item(group * 4 + t, i)).collect();
                    v.len()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200);
        }
    }
}
