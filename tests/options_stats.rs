//! The Rust options and statistics API over the C library (the list of options itself is
//! checked by tests/options_list.rs): `Config` applies as documented, and the statistics agree
//! with what the program allocated (which also checks the hand-written layout of the C
//! snapshot struct in `src/stats.rs`).

use std::sync::Mutex;
use std::time::Duration;

use shardalloc::options::{self, Opt};
use shardalloc::{Config, ShardAlloc};

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// Options and the statistics' event counters are process-wide: tests that change or reset
/// them take this lock.
static GLOBAL_STATE: Mutex<()> = Mutex::new(());

#[test]
fn set_get_and_defaults() {
    let _g = GLOBAL_STATE.lock().unwrap();
    let old = options::get(Opt::PurgeDelay);
    options::set(Opt::PurgeDelay, 1234);
    assert_eq!(options::get(Opt::PurgeDelay), 1234);
    options::set_default(Opt::PurgeDelay, 99); // set from code already: no effect
    assert_eq!(options::get(Opt::PurgeDelay), 1234);
    Config::new().purge_delay_ms(77).apply(); // a default as well
    assert_eq!(options::get(Opt::PurgeDelay), 1234);
    Config::new().purge_delay_ms(77).override_env().apply();
    assert_eq!(options::get(Opt::PurgeDelay), 77);
    options::set(Opt::PurgeDelay, old);

    options::set_enabled(Opt::ShowStats, true);
    assert!(options::is_enabled(Opt::ShowStats));
    options::set_enabled(Opt::ShowStats, false);
    assert_eq!(options::get(Opt::ShowStats), 0);
    assert!(options::get(Opt::SegmentCache) >= 0);
}

#[test]
fn config_builder_is_const_and_complete() {
    const C: Config = Config::new()
        .show_errors(true)
        .show_stats(false)
        .verbose(false)
        .purge_delay_ms(10)
        .allow_large_os_pages(false)
        .reserve_os_memory(3 * 1024 + 1)
        .arena_eager_commit(false)
        .background_purge(true)
        .segment_cache(2);
    let expect = [1, 0, 0, 10, 0, 4, 0, 1, 2];
    for (opt, want) in Opt::ALL.iter().zip(expect) {
        assert_eq!(C.get(*opt), Some(want), "{opt:?}");
    }
    assert_eq!(Config::default(), Config::new());
}

#[test]
fn stats_follow_allocations() {
    // 4000 blocks of 100 bytes: several pages of one size class fill up, and a page filling
    // up is one of the events at which blocks are counted.
    let blocks: Vec<Box<[u8; 100]>> = (0..4000).map(|_| Box::new([7u8; 100])).collect();
    // A 100-byte request's class is 112 B; a new thread's first pages (this test's thread)
    // round it up to 128 B.
    let s = shardalloc::stats();
    let class = s
        .size_classes
        .iter()
        .find(|c| c.block_size >= 100)
        .expect("a class for 100 B");
    assert!(class.block_size < 128, "{class:?}");
    let young = s.size_classes.iter().find(|c| c.block_size == 128);
    let (young_blocks, young_pages) = young.map_or((0, 0), |y| (y.blocks_in_use, y.pages));
    assert!(
        class.blocks_in_use + young_blocks >= 3000,
        "{class:?} {young:?}"
    );
    assert!(class.pages + young_pages >= 5, "{class:?} {young:?}");
    for w in s.size_classes.windows(2) {
        assert!(w[0].block_size < w[1].block_size, "{w:?}");
    }
    assert!(s.size_classes.last().unwrap().block_size <= 16 << 20);
    assert!(s.in_use >= 4000 * 100);
    assert!(s.page_bytes >= s.in_use - s.huge_bytes);
    assert!(s.committed >= s.page_bytes);
    assert!(s.reserved >= s.committed);
    assert!(s.segments >= 1 && s.threads >= 1);
    drop(blocks);
}

#[test]
fn huge_blocks_are_counted() {
    let before = shardalloc::stats().huge_bytes;
    let v = vec![1u8; 40 << 20];
    let during = shardalloc::stats();
    assert!(during.huge_bytes >= before + (40 << 20), "{during:?}");
    assert!(during.in_use >= 40 << 20);
    drop(v);
}

#[test]
fn refresh_reuses_the_vector() {
    let mut s = shardalloc::Stats::default();
    s.refresh();
    let cap = s.size_classes.capacity();
    let ptr = s.size_classes.as_ptr();
    s.refresh();
    if s.size_classes.len() <= cap {
        assert_eq!(s.size_classes.as_ptr(), ptr);
    }
}

#[test]
fn reset_clears_event_counters() {
    let _g = GLOBAL_STATE.lock().unwrap();
    shardalloc::stats_reset();
    let s = shardalloc::stats();
    // other tests may map or purge in between, but not the thousands a missed reset keeps
    assert!(s.purges < 1000 && s.mmaps < 1000, "{s:?}");
    shardalloc::stats_merge();
    shardalloc::stats_print();
}

/// The peaks remember memory that is gone: a block committed and made resident, then freed
/// and given back to the OS, still counts in the committed and the resident peak, well above
/// what is committed and resident afterwards (other tests hold far less than the block).
#[test]
fn peaks_outlive_the_memory() {
    const SIZE: usize = 256 << 20;
    let _g = GLOBAL_STATE.lock().unwrap(); // no stats_reset in between
    let mut block = vec![0u8; SIZE];
    for i in (0..SIZE).step_by(4096) {
        block[i] = 1;
    }
    drop(block);
    shardalloc::collect(true);
    let s = shardalloc::stats();
    assert!(s.committed_peak >= SIZE, "{s:?}");
    assert!(s.committed_peak >= s.committed + SIZE / 2, "{s:?}");
    let p = shardalloc::process_info();
    assert!(p.peak_commit >= SIZE, "{p:?}");
    assert!(p.peak_rss >= SIZE, "{p:?}");
    assert!(p.peak_rss >= p.current_rss + SIZE / 2, "{p:?}");
}

#[test]
fn process_info_is_plausible() {
    let v = vec![1u8; 8 << 20];
    std::thread::sleep(Duration::from_millis(20));
    let p = shardalloc::process_info();
    assert!(p.elapsed >= Duration::from_millis(20), "{p:?}");
    assert!(p.current_rss >= 8 << 20, "{p:?}");
    assert!(p.current_commit >= 8 << 20, "{p:?}");
    assert!(p.page_faults > 0, "{p:?}");
    assert!(p.elapsed < Duration::from_secs(3600));
    drop(v);
}
