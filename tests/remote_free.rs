//! Values made on one thread and dropped on another that then exits: the frees that thread
//! gathered per page (`dealloc` with a small `Layout`) all reach their pages, so once the
//! owner collects, no block of their size class counts as in use any more.

use std::sync::mpsc;
use std::thread;

use shardalloc::ShardAlloc;
#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// Blocks of a size class nothing else in this test binary allocates (200 bytes -> 208).
type Item = Box<[u8; 200]>;

fn in_use(block_size: usize) -> usize {
    shardalloc::collect(true); // the owner takes in what other threads handed over
    shardalloc::stats()
        .size_classes
        .iter()
        .filter(|c| c.block_size == block_size)
        .map(|c| c.blocks_in_use)
        .sum()
}

#[test]
fn frees_gathered_by_an_exiting_thread_all_come_back() {
    let class = ShardAlloc::good_size(200);
    let before = in_use(class);
    let (tx, rx) = mpsc::sync_channel::<Vec<Item>>(4);
    let consumer = thread::spawn(move || {
        let mut dropped = 0usize;
        for batch in rx {
            for (i, item) in batch.into_iter().enumerate() {
                assert_eq!(item[0], (i % 251) as u8, "contents changed");
                dropped += 1;
            }
        }
        dropped
    });
    let mut sent = 0;
    for _ in 0..100 {
        let batch: Vec<Item> = (0..64).map(|i| Box::new([(i % 251) as u8; 200])).collect();
        sent += batch.len();
        tx.send(batch).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), sent);
    assert_eq!(
        in_use(class),
        before,
        "blocks freed by the consumer still count as in use"
    );
}
