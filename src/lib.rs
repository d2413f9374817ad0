//! shardalloc: a general-purpose memory allocator of the mimalloc family, with thread-local
//! heaps and sharded free lists, for use as Rust's global allocator.
//!
//! The allocator itself is C (in the crate's `c_src/`), built by the crate's build script with
//! nothing but a C compiler. This crate wraps it in [`ShardAlloc`], a [`GlobalAlloc`], and a few
//! safe helpers.
//!
//! # Use it as the global allocator
//!
//! ```
//! use shardalloc::ShardAlloc;
//! #[global_allocator]
//! static GLOBAL: ShardAlloc = ShardAlloc;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert!(shardalloc::is_in_heap(v.as_ptr()));
//! }
//! ```
//!
//! # Living beside other allocators
//!
//! The C functions are linked under private names (`shardalloc_mi_malloc`, ...), so this crate
//! links into the same binary as another library with the mimalloc API, such as the `mimalloc`
//! crate, without a symbol clash. [`ffi`] holds the raw declarations.
//!
//! # The `override` feature
//!
//! With `features = ["override"]` the final executable also exports `malloc`, `free`,
//! `calloc`, `realloc`, `posix_memalign`, ..., glibc's `__libc_*` names and C++'s
//! `operator new`/`delete`, so C and C++ code linked into it (a `-sys` crate) and libc's own
//! internal allocations come from shardalloc too. The risks: every allocation of the process
//! goes through shardalloc; only one allocator may override malloc in a process (not beside
//! another override or an `LD_PRELOAD`ed allocator); memory from another allocator must never
//! reach `free`; and it is for executables only: in a `cdylib` it binds only that library's
//! calls to a private copy of the allocator. A `cdylib` uses [`ShardAlloc`] as its global
//! allocator without the feature and loads with `dlopen`; build it with the `dynamic-tls`
//! feature where the process may be short of static TLS (see build.rs for the cost).

#![deny(missing_docs)]
#![no_std]
#![cfg_attr(feature = "nightly", feature(allocator_api))]

// The vector of size classes in `stats::Stats`.
extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

// Generated code: its names are C's, and its docs are the header's comments, which are not
// written as Markdown (`SHARDALLOC_<NAME>` would read as an HTML tag).
#[allow(
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::all,
    rustdoc::all
)]
pub mod ffi;

pub mod heap;
pub mod options;
pub mod stats;

pub use heap::Heap;
pub use heap::HeapStats;

pub use options::{Config, Configured};
pub use stats::{
    process_info, stats, stats_merge, stats_print, stats_reset, ProcessInfo, SizeClass, Stats,
};

/// The largest alignment shardalloc accepts (64 TiB); a [`Layout`] with a larger one, or one
/// the OS has no address space for, makes [`ShardAlloc`] return null, which Rust reports as an
/// allocation failure. An alignment of 32 MiB or more gets a mapping of its own, with up to
/// 32 MiB of extra address space (not memory) in front of the block.
pub const ALIGNMENT_MAX: usize = ffi::MI_ALIGNMENT_MAX as usize;

/// The shardalloc allocator, for use as Rust's global allocator or through [`GlobalAlloc`]
/// directly.
///
/// It is a unit struct, so it can be named in a `static` with no constructor call. Every call
/// goes to the calling thread's own heap; memory may be freed by any thread.
///
/// Every allocation uses the C library's aligned entry points with the [`Layout`]'s alignment
/// (`mi_malloc_aligned`, `mi_zalloc_aligned`, `mi_realloc_aligned`), also for small alignments:
/// guessing which alignments the plain entry points would satisfy anyway is how another
/// allocator crate once handed out misaligned memory (RUSTSEC-2022-0094).
///
/// # Example
///
/// Install it as the global allocator of a program (three lines):
///
/// ```
/// use shardalloc::ShardAlloc;
/// #[global_allocator]
/// static GLOBAL: ShardAlloc = ShardAlloc;
/// # fn main() {
/// #     let b = Box::new(7u32);
/// #     assert!(shardalloc::is_in_heap(&*b));
/// # }
/// ```
///
/// Or call it through the trait, without making it global:
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use shardalloc::ShardAlloc;
///
/// let layout = Layout::from_size_align(100, 64).unwrap();
/// unsafe {
///     let p = ShardAlloc.alloc(layout);
///     assert!(!p.is_null());
///     assert_eq!(p as usize % 64, 0);
///     p.write_bytes(0xAB, 100);
///     ShardAlloc.dealloc(p, layout);
/// }
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardAlloc;

unsafe impl GlobalAlloc for ShardAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
    }

    /// A block whose `Layout` has a size and an alignment of at most 4 KiB lies in a small
    /// page, which its address names without a look-up: such blocks take the sized free
    /// (debug builds check the size against the block and abort on a mismatch).
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        free_with_layout(ptr, layout)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ffi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
    }
}

/// The largest size and alignment the sized free takes (`SIZED_SMALL_MAX` in free.c).
const SIZED_FREE_MAX: usize = 4096;

/// Frees `ptr`, a block of the C library allocated (or last reallocated) with `layout` through
/// the aligned calls, of the global heap or of a [`Heap`]: the sized free where the layout
/// names a small page, `mi_free` otherwise.
#[inline]
pub(crate) unsafe fn free_with_layout(ptr: *mut u8, layout: Layout) {
    if layout.size() | layout.align() <= SIZED_FREE_MAX {
        sized::_sa_free_small(ptr.cast(), layout.size())
    } else {
        ffi::mi_free(ptr.cast())
    }
}

mod sized {
    extern "C" {
        /// Frees `p` (not null), allocated through the C API with a size and an alignment of
        /// at most 4 KiB, of which `size` is the size; an internal symbol of the C library
        /// (free.c), not part of its public API.
        pub fn _sa_free_small(p: *mut core::ffi::c_void, size: usize);
    }
}

impl ShardAlloc {
    /// The number of bytes usable in the block that `ptr` points to: at least the size it was
    /// allocated with, often a little more (the block's size class). 0 for a null pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be null or a pointer returned by shardalloc (through [`ShardAlloc`] or the C
    /// API) that has not been freed yet.
    ///
    /// # Example
    ///
    /// ```
    /// use core::alloc::{GlobalAlloc, Layout};
    /// use shardalloc::ShardAlloc;
    ///
    /// let layout = Layout::from_size_align(100, 8).unwrap();
    /// unsafe {
    ///     let p = ShardAlloc.alloc(layout);
    ///     assert!(ShardAlloc::usable_size(p) >= 100);
    ///     ShardAlloc.dealloc(p, layout);
    /// }
    /// ```
    #[inline]
    pub unsafe fn usable_size(ptr: *const u8) -> usize {
        ffi::mi_usable_size(ptr.cast())
    }

    /// The usable size that an allocation of `size` bytes gets: the size of its block. A
    /// thread's first few pages may give a request of up to 1 KiB more (its size rounded up
    /// to a power of two, at least 64), which [`ShardAlloc::usable_size`] then reports.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(shardalloc::ShardAlloc::good_size(100) >= 100);
    /// ```
    #[inline]
    pub fn good_size(size: usize) -> usize {
        // SAFETY: a pure function of its argument.
        unsafe { ffi::mi_good_size(size) }
    }
}

/// True when `ptr` points into memory that shardalloc reserved from the operating system.
///
/// Any pointer may be asked about, dangling or not: the answer comes from shardalloc's own
/// address-space bookkeeping, and nothing is read through `ptr`. It tells whether an
/// allocation was served by shardalloc, not whether the block is still live.
///
/// # Example
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use shardalloc::ShardAlloc;
///
/// let layout = Layout::new::<[u64; 4]>();
/// unsafe {
///     let p = ShardAlloc.alloc(layout);
///     assert!(shardalloc::is_in_heap(p));
///     ShardAlloc.dealloc(p, layout);
/// }
/// let on_stack = 5u8;
/// assert!(!shardalloc::is_in_heap(&on_stack));
/// ```
#[inline]
pub fn is_in_heap<T: ?Sized>(ptr: *const T) -> bool {
    // SAFETY: mi_is_in_heap_region only compares the address with shardalloc's own tables.
    unsafe { ffi::mi_is_in_heap_region(ptr.cast::<c_void>()) }
}

/// The version of the C library, in mimalloc's encoding `major * 100 + minor * 10 + patch`
/// (0.1.0 is 10).
///
/// # Example
///
/// ```
/// assert_eq!(shardalloc::version(), shardalloc::ffi::SHARDALLOC_VERSION);
/// ```
#[inline]
pub fn version() -> u32 {
    // SAFETY: no arguments, no state.
    unsafe { ffi::mi_version() as u32 }
}

/// Give memory back: free the calling thread's retired pages and cached segments; with
/// `force`, also return free memory to the operating system at once instead of after a delay.
///
/// Never needed for correctness; useful after a phase that freed a lot of memory.
///
/// # Example
///
/// ```
/// let v = vec![0u8; 1 << 20];
/// drop(v);
/// shardalloc::collect(true);
/// ```
#[inline]
pub fn collect(force: bool) {
    // SAFETY: safe to call at any time from any thread.
    unsafe { ffi::mi_collect(force) }
}

/// Release the calling thread's heap now, as happens when the thread exits: its unused memory
/// is returned and pages still holding live blocks are handed over for other threads to
/// reclaim. The thread may keep allocating afterwards; its heap is then made again.
///
/// Useful for a thread that allocated a lot, is done with allocation, but lives on.
///
/// # Example
///
/// ```
/// let kept = vec![1u32; 1000];
/// shardalloc::thread_done();
/// assert_eq!(kept.iter().sum::<u32>(), 1000); // blocks stay valid
/// ```
#[inline]
pub fn thread_done() {
    // SAFETY: blocks allocated before stay valid; the heap is re-created on demand.
    unsafe { ffi::mi_thread_done() }
}
