//! Typed access to the allocator's options, and [`Config`]: options fixed in the
//! `#[global_allocator]` static, applied before the first allocation.
//!
//! Every option is read once, when the allocator initialises (on the first allocation of the
//! process), from the environment variable named by [`Opt::env_var`]. Code may change it at
//! any time with [`set`]; what a change does depends on the option (see each [`Opt`]
//! variant): most are read again at each use, a few shape the reservation of memory and act
//! only when set before the first allocation. [`Config`] is how to set those from Rust: a
//! `const` builder that a [`Configured`] global allocator applies right before its first
//! allocation.
//!
//! # Example
//!
//! ```
//! use shardalloc::options::{self, Opt};
//!
//! options::set(Opt::PurgeDelay, 200);
//! assert_eq!(options::get(Opt::PurgeDelay), 200);
//! assert_eq!(Opt::PurgeDelay.env_var(), "SHARDALLOC_PURGE_DELAY");
//! ```

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::{ffi, ShardAlloc};

/// Declares [`Opt`] from one list: each variant with its documentation, its C enum constant
/// and its environment variable. `Opt::ALL`, `Opt::to_ffi` and `Opt::env_var` are derived from
/// it, and `tests/options_list.rs` checks the list against the C header and table.
macro_rules! options {
    ($($(#[$doc:meta])* $variant:ident = $ffi:ident, $env:literal;)*) => {
        /// One option of the allocator (C: `mi_option_t`, with mimalloc's names).
        ///
        /// Values are integers; a flag is enabled when non-zero. In the environment, a flag
        /// accepts `1`/`0`, `true`/`false`, `yes`/`no` and `on`/`off`; a number is decimal.
        ///
        /// # Example
        ///
        /// ```
        /// use shardalloc::options::Opt;
        ///
        /// for opt in Opt::ALL {
        ///     println!("{} = {}", opt.env_var(), shardalloc::options::get(opt));
        /// }
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Opt {
            $($(#[$doc])* $variant,)*
        }

        impl Opt {
            /// Every option, in the order of the C enum.
            ///
            /// # Example
            ///
            /// ```
            /// use shardalloc::options::Opt;
            /// assert!(Opt::ALL.contains(&Opt::Verbose));
            /// ```
            pub const ALL: [Opt; [$($env),*].len()] = [$(Opt::$variant),*];

            /// The C enum value (`mi_option_t`).
            ///
            /// # Example
            ///
            /// ```
            /// use shardalloc::{ffi, options::Opt};
            /// assert_eq!(Opt::PurgeDelay.to_ffi(), ffi::mi_option_purge_delay);
            /// ```
            pub const fn to_ffi(self) -> ffi::mi_option_t {
                match self {
                    $(Opt::$variant => ffi::$ffi,)*
                }
            }

            /// The environment variable the option is read from at start-up.
            ///
            /// # Example
            ///
            /// ```
            /// use shardalloc::options::Opt;
            /// assert_eq!(Opt::ShowStats.env_var(), "SHARDALLOC_SHOW_STATS");
            /// ```
            pub const fn env_var(self) -> &'static str {
                match self {
                    $(Opt::$variant => $env,)*
                }
            }
        }
    };
}

options! {
    /// `SHARDALLOC_SHOW_ERRORS` (default: on in debug builds of the C code, off in release):
    /// report misuse (a double free, an invalid pointer) and failed system calls on stderr.
    /// Read at each message.
    ShowErrors = mi_option_show_errors, "SHARDALLOC_SHOW_ERRORS";
    /// `SHARDALLOC_SHOW_STATS` (default off): print the statistics ([`crate::stats_print`])
    /// on stderr when the process exits. Read at exit.
    ShowStats = mi_option_show_stats, "SHARDALLOC_SHOW_STATS";
    /// `SHARDALLOC_VERBOSE` (default off): a line at start-up (version, build) and on rare
    /// events (the reservation, a missing large-page pool); also shows errors. Read at each
    /// message.
    Verbose = mi_option_verbose, "SHARDALLOC_VERBOSE";
    /// `SHARDALLOC_PURGE_DELAY` (default 25): milliseconds a free 64 KiB slice stays
    /// committed before it is given back to the OS (`madvise(MADV_DONTNEED)`), so that memory
    /// reused within the delay is never faulted in again (runs of 2 MiB and more wait at
    /// least 4 times it). 0 purges at once, -1 never. Read each time memory is freed. A
    /// thread whose purged memory is soon wanted again gets up to 8 times this delay
    /// (doubling each time), and back towards it after a quiet while
    /// ([`crate::Stats::purge_delay_raises`]). The purge itself runs on allocator activity: the owning
    /// thread's allocation slow path and page frees, [`crate::collect`], and for memory no
    /// thread owns (segments of exited threads, the segment cache) any thread's slow path or
    /// the [`Opt::BackgroundPurge`] thread.
    PurgeDelay = mi_option_purge_delay, "SHARDALLOC_PURGE_DELAY";
    /// `SHARDALLOC_ALLOW_LARGE_OS_PAGES` (default off): ask for transparent huge pages
    /// (`MADV_HUGEPAGE`) on every segment, and explicit 2 MiB pages (`MAP_HUGETLB`, where the
    /// system has a pool) for the [`Opt::ReserveOsMemory`] reservation. Fewer page faults and
    /// TLB misses, coarser purging; small pages get huge pages too (by default only large
    /// blocks do), so each thread's first allocation brings in 2 MiB: for a program with a
    /// few big heaps, not one with many threads. Read when a segment is mapped; for the
    /// reservation, at start-up only.
    AllowLargeOsPages = mi_option_allow_large_os_pages, "SHARDALLOC_ALLOW_LARGE_OS_PAGES";
    /// `SHARDALLOC_RESERVE_OS_MEMORY` (default 0): KiB of address space to reserve at
    /// start-up, from which segments are carved before any other is mapped (the environment
    /// variable accepts `K`, `M`, `G` suffixes, e.g. `4G`). Start-up only: set it with a
    /// [`Config`] or the environment.
    ReserveOsMemory = mi_option_reserve_os_memory, "SHARDALLOC_RESERVE_OS_MEMORY";
    /// `SHARDALLOC_ARENA_EAGER_COMMIT` (default off): pre-fault the whole
    /// [`Opt::ReserveOsMemory`] reservation at start-up (trading memory for no page faults
    /// later). Start-up only.
    ArenaEagerCommit = mi_option_arena_eager_commit, "SHARDALLOC_ARENA_EAGER_COMMIT";
    /// `SHARDALLOC_BACKGROUND_PURGE` (default on): the housekeeper, one thread of the
    /// allocator's own, started the first time memory waits to go back and asleep while none
    /// does. It purges what is due in every segment, frees the pages of live threads whose
    /// blocks other threads freed (whether the owner is busy or blocked), and takes in the
    /// memory of exited threads, so free memory goes back to the OS while threads live. Off:
    /// threads purge their own memory on their slow paths. Set it with a [`Config`] or the
    /// environment, before the first free.
    BackgroundPurge = mi_option_background_purge, "SHARDALLOC_BACKGROUND_PURGE";
    /// `SHARDALLOC_SEGMENT_CACHE` (default 4, at most 64): empty 32 MiB segments kept for
    /// reuse (their free memory is still purged after the delay; only the address space
    /// stays). Beyond it the cache keeps up to as many as threads have owned at once, for
    /// 40 purge delays, so that threads started after others exit reuse their segments.
    /// 0 unmaps every empty segment at once. Read when a segment empties.
    SegmentCache = mi_option_segment_cache, "SHARDALLOC_SEGMENT_CACHE";
}

/// The option's current value: from code ([`set`]), the environment, or its default.
///
/// # Example
///
/// ```
/// use shardalloc::options::{self, Opt};
/// assert!(options::get(Opt::SegmentCache) >= 0);
/// ```
pub fn get(opt: Opt) -> i64 {
    // SAFETY: reads one word of the options table.
    unsafe { ffi::mi_option_get(opt.to_ffi()) as i64 }
}

/// Set the option to `value`; the environment variable no longer applies to it. Values
/// beyond the range of a C `long` saturate.
///
/// # Example
///
/// ```
/// use shardalloc::options::{self, Opt};
/// options::set(Opt::Verbose, 0);
/// assert!(!options::is_enabled(Opt::Verbose));
/// ```
pub fn set(opt: Opt, value: i64) {
    // SAFETY: writes one word of the options table; any value is valid.
    unsafe { ffi::mi_option_set(opt.to_ffi(), to_c_long(value)) }
}

/// Set the option to `value` unless the environment or code set it already: a default that
/// the environment variable still overrides.
///
/// # Example
///
/// ```
/// use shardalloc::options::{self, Opt};
/// options::set(Opt::SegmentCache, 2);
/// options::set_default(Opt::SegmentCache, 8); // already set: no effect
/// assert_eq!(options::get(Opt::SegmentCache), 2);
/// ```
pub fn set_default(opt: Opt, value: i64) {
    // SAFETY: as for `set`.
    unsafe { ffi::mi_option_set_default(opt.to_ffi(), to_c_long(value)) }
}

/// True when the option's value is non-zero.
///
/// # Example
///
/// ```
/// use shardalloc::options::{self, Opt};
/// options::set_enabled(Opt::ShowStats, false);
/// assert!(!options::is_enabled(Opt::ShowStats));
/// ```
pub fn is_enabled(opt: Opt) -> bool {
    // SAFETY: reads one word of the options table.
    unsafe { ffi::mi_option_is_enabled(opt.to_ffi()) }
}

/// Set a flag option to 1 (`true`) or 0 (`false`), as [`set`] does.
///
/// # Example
///
/// ```
/// use shardalloc::options::{self, Opt};
/// options::set_enabled(Opt::ShowErrors, true);
/// assert_eq!(options::get(Opt::ShowErrors), 1);
/// ```
pub fn set_enabled(opt: Opt, enabled: bool) {
    // SAFETY: as for `set`.
    unsafe { ffi::mi_option_set_enabled(opt.to_ffi(), enabled) }
}

fn to_c_long(value: i64) -> core::ffi::c_long {
    // c_long is i64 or i32 depending on the target: saturate where it is narrower.
    core::ffi::c_long::try_from(value).unwrap_or(if value < 0 {
        core::ffi::c_long::MIN
    } else {
        core::ffi::c_long::MAX
    })
}

/// Options to apply before the allocator's first allocation: a `const` builder for a
/// `#[global_allocator]` static (see [`ShardAlloc::with_config`]).
///
/// Each value set here is applied as a default ([`set_default`]): an environment variable
/// that is set still wins, so a deployment can retune a binary without rebuilding it. Call
/// [`Config::override_env`] to make the values in code win instead.
///
/// # Example
///
/// ```
/// use shardalloc::{Config, Configured, ShardAlloc};
///
/// #[global_allocator]
/// static GLOBAL: Configured = ShardAlloc::with_config(
///     Config::new().purge_delay_ms(100).segment_cache(2).show_stats(false),
/// );
///
/// fn main() {
///     let v = vec![1u8; 1000];
///     assert!(shardalloc::is_in_heap(v.as_ptr()));
///     if std::env::var_os("SHARDALLOC_PURGE_DELAY").is_none() {
///         assert_eq!(shardalloc::options::get(shardalloc::options::Opt::PurgeDelay), 100);
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    values: [Option<i64>; Opt::ALL.len()],
    override_env: bool,
}

impl Config {
    /// A configuration that changes nothing.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new();
    /// assert_eq!(C.get(shardalloc::options::Opt::PurgeDelay), None);
    /// ```
    pub const fn new() -> Config {
        Config {
            values: [None; Opt::ALL.len()],
            override_env: false,
        }
    }

    /// Set any option (the typed methods below are shorthands for this).
    ///
    /// # Example
    ///
    /// ```
    /// use shardalloc::{options::Opt, Config};
    /// const C: Config = Config::new().with(Opt::ReserveOsMemory, 1 << 20); // 1 GiB
    /// assert_eq!(C.get(Opt::ReserveOsMemory), Some(1 << 20));
    /// ```
    pub const fn with(mut self, opt: Opt, value: i64) -> Config {
        self.values[opt as usize] = Some(value);
        self
    }

    /// The value this configuration sets for `opt`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use shardalloc::{options::Opt, Config};
    /// assert_eq!(Config::new().verbose(true).get(Opt::Verbose), Some(1));
    /// ```
    pub const fn get(&self, opt: Opt) -> Option<i64> {
        self.values[opt as usize]
    }

    /// Make the values of this configuration win over the environment variables (by default
    /// the environment wins).
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().purge_delay_ms(0).override_env();
    /// # let _ = C;
    /// ```
    pub const fn override_env(mut self) -> Config {
        self.override_env = true;
        self
    }

    /// [`Opt::PurgeDelay`]: milliseconds before free memory goes back to the OS (0: at once,
    /// -1: never).
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().purge_delay_ms(100);
    /// # let _ = C;
    /// ```
    pub const fn purge_delay_ms(self, ms: i64) -> Config {
        self.with(Opt::PurgeDelay, ms)
    }

    /// [`Opt::ShowStats`]: print the statistics at exit.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().show_stats(true);
    /// # let _ = C;
    /// ```
    pub const fn show_stats(self, on: bool) -> Config {
        self.with(Opt::ShowStats, on as i64)
    }

    /// [`Opt::ShowErrors`]: report misuse and OS errors on stderr.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().show_errors(true);
    /// # let _ = C;
    /// ```
    pub const fn show_errors(self, on: bool) -> Config {
        self.with(Opt::ShowErrors, on as i64)
    }

    /// [`Opt::Verbose`]: messages at start-up and on rare events.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().verbose(false);
    /// # let _ = C;
    /// ```
    pub const fn verbose(self, on: bool) -> Config {
        self.with(Opt::Verbose, on as i64)
    }

    /// [`Opt::AllowLargeOsPages`]: transparent huge pages for segments, explicit large pages
    /// for the reservation.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().allow_large_os_pages(true);
    /// # let _ = C;
    /// ```
    pub const fn allow_large_os_pages(self, on: bool) -> Config {
        self.with(Opt::AllowLargeOsPages, on as i64)
    }

    /// [`Opt::ReserveOsMemory`]: bytes of address space to reserve at start-up (rounded up
    /// to whole KiB here, to whole 32 MiB segments by the allocator).
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().reserve_os_memory(1 << 30);
    /// assert_eq!(C.get(shardalloc::options::Opt::ReserveOsMemory), Some(1 << 20)); // KiB
    /// ```
    pub const fn reserve_os_memory(self, bytes: u64) -> Config {
        let kib = bytes.div_ceil(1024);
        let kib = if kib > i64::MAX as u64 {
            i64::MAX
        } else {
            kib as i64
        };
        self.with(Opt::ReserveOsMemory, kib)
    }

    /// [`Opt::ArenaEagerCommit`]: pre-fault the reservation at start-up.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().arena_eager_commit(false);
    /// # let _ = C;
    /// ```
    pub const fn arena_eager_commit(self, on: bool) -> Config {
        self.with(Opt::ArenaEagerCommit, on as i64)
    }

    /// [`Opt::BackgroundPurge`]: the housekeeper thread gives memory back while threads live.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().background_purge(true);
    /// # let _ = C;
    /// ```
    pub const fn background_purge(self, on: bool) -> Config {
        self.with(Opt::BackgroundPurge, on as i64)
    }

    /// [`Opt::SegmentCache`]: empty segments kept for reuse.
    ///
    /// # Example
    ///
    /// ```
    /// const C: shardalloc::Config = shardalloc::Config::new().segment_cache(0);
    /// # let _ = C;
    /// ```
    pub const fn segment_cache(self, segments: i64) -> Config {
        self.with(Opt::SegmentCache, segments)
    }

    /// Apply the configuration now ([`set`] or [`set_default`] per value). [`Configured`]
    /// calls this before its first allocation; call it yourself to apply a configuration
    /// that was built at run time (options that act at start-up only are then too late if
    /// anything was allocated already).
    ///
    /// # Example
    ///
    /// ```
    /// use shardalloc::{options::{self, Opt}, Config};
    /// Config::new().segment_cache(3).override_env().apply();
    /// assert_eq!(options::get(Opt::SegmentCache), 3);
    /// ```
    pub fn apply(&self) {
        for opt in Opt::ALL {
            if let Some(value) = self.values[opt as usize] {
                if self.override_env {
                    set(opt, value);
                } else {
                    set_default(opt, value);
                }
            }
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

/// Set once the first [`Configured`] allocation applied its configuration. One flag per
/// process: a program has one global allocator.
static CONFIG_APPLIED: AtomicBool = AtomicBool::new(false);

/// [`ShardAlloc`] with a [`Config`] that is applied right before the first allocation made
/// through it, so options that act only at start-up (the reservation, the background purge
/// thread) take effect without any code in `main`. Made by [`ShardAlloc::with_config`].
///
/// Cost: `alloc` and `alloc_zeroed` test one flag (a relaxed load and a branch that is
/// taken once); `dealloc` and `realloc` are those of [`ShardAlloc`]. The plain
/// [`ShardAlloc`] has no such test.
///
/// # Example
///
/// ```
/// use shardalloc::{Config, Configured, ShardAlloc};
///
/// #[global_allocator]
/// static GLOBAL: Configured = ShardAlloc::with_config(Config::new().background_purge(true));
///
/// fn main() {
///     let b = Box::new([0u64; 64]);
///     assert!(shardalloc::is_in_heap(&*b));
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Configured {
    config: Config,
}

impl Configured {
    /// The configuration this allocator applies.
    ///
    /// # Example
    ///
    /// ```
    /// use shardalloc::{Config, ShardAlloc};
    /// let a = ShardAlloc::with_config(Config::new().verbose(true));
    /// assert_eq!(a.config().get(shardalloc::options::Opt::Verbose), Some(1));
    /// ```
    pub const fn config(&self) -> &Config {
        &self.config
    }

    #[cold]
    #[inline(never)]
    fn apply_once(&self) {
        // Two threads racing here both apply the same values: harmless, and the allocator's
        // own start-up is serialised by the C library.
        self.config.apply();
        CONFIG_APPLIED.store(true, Ordering::Release);
    }

    #[inline(always)]
    fn ensure_applied(&self) {
        if !CONFIG_APPLIED.load(Ordering::Relaxed) {
            self.apply_once();
        }
    }
}

impl ShardAlloc {
    /// A [`ShardAlloc`] that applies `config` before its first allocation: the way to fix
    /// options in the `#[global_allocator]` static.
    ///
    /// # Example
    ///
    /// ```
    /// use shardalloc::{Config, Configured, ShardAlloc};
    ///
    /// #[global_allocator]
    /// static GLOBAL: Configured =
    ///     ShardAlloc::with_config(Config::new().purge_delay_ms(100).show_stats(false));
    /// # fn main() { let _ = vec![0u8; 10]; }
    /// ```
    pub const fn with_config(config: Config) -> Configured {
        Configured { config }
    }
}

// SAFETY: every call is forwarded to ShardAlloc after options were written, which does not
// touch any allocation.
unsafe impl GlobalAlloc for Configured {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.ensure_applied();
        ShardAlloc.alloc(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.ensure_applied();
        ShardAlloc.alloc_zeroed(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ShardAlloc.dealloc(ptr, layout)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ShardAlloc.realloc(ptr, layout, new_size)
    }
}
