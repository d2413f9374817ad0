//! Statistics: what the allocator holds ([`stats`]), what the process uses
//! ([`process_info`]), and the C library's printout ([`stats_print`]).
//!
//! The counters are kept on the allocator's slow paths only (a page is made, filled from its
//! free lists, freed; a segment is mapped; memory is purged), so they cost nothing per
//! `malloc`/`free`. The price: the number of blocks in use is exact at those events and may
//! lag between them by the blocks allocated and freed since a page was last refilled.

use alloc::vec::Vec;
use core::time::Duration;

use crate::ffi;

/// One size class in a [`Stats`] snapshot.
///
/// # Example
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shardalloc::ShardAlloc = shardalloc::ShardAlloc;
///
/// fn main() {
///     let v: Vec<Vec<u64>> = (0..1000).map(|_| vec![0u64; 16]).collect(); // 128 B each
///     let s = shardalloc::stats();
///     let class = s.size_classes.iter().find(|c| c.block_size >= 128).unwrap();
///     assert_eq!(class.block_size, 128);
///     assert!(class.blocks_in_use > 0);
///     drop(v);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeClass {
    /// The size of each block of the class, in bytes.
    pub block_size: usize,
    /// Blocks of the class in use.
    pub blocks_in_use: usize,
    /// Pages holding blocks of the class (in use or free).
    pub pages: usize,
}

/// A snapshot of the allocator's memory, summed over all threads (exited ones included).
///
/// Made by [`stats`] or refreshed in place by [`Stats::refresh`]. Byte counts are exact for
/// what the allocator maps and commits; `in_use` is exact at page-level events (see the
/// [module docs](mod@crate::stats)).
///
/// # Example
///
/// ```
/// let s = shardalloc::stats();
/// assert!(s.reserved >= s.committed);
/// println!("{s:#?}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of blocks in use: small, medium and large size classes and huge blocks.
    pub in_use: usize,
    /// Bytes backed by memory: touched and not purged (what the allocator adds to RSS).
    pub committed: usize,
    /// The peak of `committed`, since start or [`stats_reset`]; never below `committed` (a
    /// snapshot may read another thread's commit before that thread raised the peak).
    pub committed_peak: usize,
    /// Bytes of address space mapped from the OS.
    pub reserved: usize,
    /// The peak of `reserved`, since start or [`stats_reset`]; never below `reserved`.
    pub reserved_peak: usize,
    /// Bytes of pages that hold blocks (in use or free), huge blocks aside.
    pub page_bytes: usize,
    /// Bytes of huge blocks (over 4 MiB, each in its own mapping).
    pub huge_bytes: usize,
    /// Segments mapped, including cached and abandoned ones.
    pub segments: usize,
    /// Segments of exited threads still holding blocks, waiting for another thread to
    /// reclaim them.
    pub abandoned_segments: usize,
    /// Threads that have a heap.
    pub threads: usize,
    /// `madvise` calls that gave memory back, since start or [`stats_reset`].
    pub purges: usize,
    /// Times a purge delay (a thread's, or that of the memory exited threads leave) doubled
    /// because memory given back was wanted again soon after, since start or
    /// [`stats_reset`].
    pub purge_delay_raises: usize,
    /// Mappings made (`mmap`), since start or [`stats_reset`].
    pub mmaps: usize,
    /// The size classes that hold pages or blocks, smallest first.
    pub size_classes: Vec<SizeClass>,
}

impl Stats {
    /// Take a new snapshot into `self`, reusing its `size_classes` vector: after the first
    /// call, polling allocates nothing.
    ///
    /// # Example
    ///
    /// ```
    /// let mut s = shardalloc::Stats::default();
    /// for _ in 0..3 {
    ///     s.refresh();
    ///     println!("{} of {} bytes committed", s.in_use, s.committed);
    /// }
    /// ```
    pub fn refresh(&mut self) {
        let mut raw = core::mem::MaybeUninit::<ffi::mi_stats_snapshot_t>::zeroed();
        // SAFETY: mi_stats_snapshot fills the whole struct (all plain integers).
        let raw = unsafe {
            ffi::mi_stats_snapshot(raw.as_mut_ptr());
            raw.assume_init()
        };
        self.in_use = raw.in_use;
        self.committed = raw.committed;
        self.committed_peak = raw.committed_peak.max(raw.committed);
        self.reserved = raw.reserved;
        self.reserved_peak = raw.reserved_peak.max(raw.reserved);
        self.page_bytes = raw.page_bytes;
        self.huge_bytes = raw.huge_bytes;
        self.segments = raw.segments;
        self.abandoned_segments = raw.abandoned;
        self.threads = raw.threads;
        self.purges = raw.purges;
        self.purge_delay_raises = raw.purge_delay_raises;
        self.mmaps = raw.mmaps;
        self.size_classes.clear();
        let bins = raw.bins.min(raw.bin_block_size.len());
        for bin in 0..bins {
            if raw.bin_in_use[bin] == 0 && raw.bin_pages[bin] == 0 {
                continue;
            }
            self.size_classes.push(SizeClass {
                block_size: raw.bin_block_size[bin],
                blocks_in_use: raw.bin_in_use[bin],
                pages: raw.bin_pages[bin],
            });
        }
    }
}

/// A snapshot of the allocator's memory (see [`Stats`]).
///
/// Cost: a lock held while the per-thread counters of the live threads are summed
/// (69 size classes per thread), and one allocation for the size-class vector; no system
/// call. [`Stats::refresh`] avoids the allocation when polling.
///
/// # Example
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shardalloc::ShardAlloc = shardalloc::ShardAlloc;
///
/// fn main() {
///     let v: Vec<u32> = (0..100_000).collect();
///     let s = shardalloc::stats();
///     assert!(s.committed >= v.len() * 4);
/// }
/// ```
pub fn stats() -> Stats {
    let mut s = Stats::default();
    s.refresh();
    s
}

/// Information about the process (C: `mi_process_info`), from `getrusage`, `/proc/self/statm`
/// and the allocator's own counters.
///
/// # Example
///
/// ```
/// let p = shardalloc::process_info();
/// println!("{p:?}");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Time since the allocator initialised (the process's first allocation).
    pub elapsed: Duration,
    /// CPU time in user mode, all threads.
    pub user_time: Duration,
    /// CPU time in the kernel, all threads.
    pub system_time: Duration,
    /// Resident set size now, in bytes (`/proc/self/statm`).
    pub current_rss: usize,
    /// Peak resident set size, in bytes (`getrusage`'s `ru_maxrss`).
    pub peak_rss: usize,
    /// Bytes the allocator has committed now (as [`Stats::committed`]).
    pub current_commit: usize,
    /// Peak of the committed bytes.
    pub peak_commit: usize,
    /// Page faults so far, minor and major.
    pub page_faults: usize,
}

/// Information about the process: times, resident set size, committed memory, page faults.
///
/// Cost: `getrusage` and one read of `/proc/self/statm`; no allocation.
///
/// # Example
///
/// ```
/// let info = shardalloc::process_info();
/// println!("rss {} MiB, {} page faults", info.current_rss >> 20, info.page_faults);
/// ```
pub fn process_info() -> ProcessInfo {
    let mut v = [0usize; 8];
    let [elapsed, user, system, rss, peak_rss, commit, peak_commit, faults] = &mut v;
    // SAFETY: eight valid out-pointers.
    unsafe {
        ffi::mi_process_info(
            elapsed,
            user,
            system,
            rss,
            peak_rss,
            commit,
            peak_commit,
            faults,
        )
    };
    let ms = |x: usize| Duration::from_millis(x as u64);
    ProcessInfo {
        elapsed: ms(v[0]),
        user_time: ms(v[1]),
        system_time: ms(v[2]),
        current_rss: v[3],
        peak_rss: v[4],
        current_commit: v[5],
        peak_commit: v[6],
        page_faults: v[7],
    }
}

/// Print the statistics to stderr (C: `mi_stats_print`): the counters of [`Stats`] with
/// their peaks, a line per size class in use, and [`process_info`]. Allocates nothing.
///
/// # Example
///
/// ```
/// shardalloc::stats_print();
/// ```
pub fn stats_print() {
    // SAFETY: NULL is the only output the C side accepts.
    unsafe { ffi::mi_stats_print(core::ptr::null_mut()) }
}

/// Reset the peaks to the current values and the event counters ([`Stats::purges`],
/// [`Stats::purge_delay_raises`], [`Stats::mmaps`]) to zero (C: `mi_stats_reset`).
///
/// # Example
///
/// ```
/// shardalloc::stats_reset();
/// println!("{} mappings since the reset", shardalloc::stats().mmaps);
/// ```
pub fn stats_reset() {
    // SAFETY: no arguments.
    unsafe { ffi::mi_stats_reset() }
}

/// Merge the calling thread's counters into the process totals now (C: `mi_stats_merge`;
/// done anyway when the thread exits). Snapshots include live threads already, so this is
/// rarely needed.
///
/// # Example
///
/// ```
/// shardalloc::stats_merge();
/// ```
pub fn stats_merge() {
    // SAFETY: no arguments.
    unsafe { ffi::mi_stats_merge() }
}
