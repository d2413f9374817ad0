//! [`Heap`]: a heap of its own for a group of allocations, dropped with all of them at once.
//!
//! A `Heap` is an allocator: collections are built in it by passing `&heap` as their allocator
//! (allocator-api2's `Vec` and `Box`, hashbrown's `HashMap`, and with the `nightly` feature the
//! standard library's own collections). Objects can be freed one by one as usual, and when the
//! heap is dropped, every block still allocated in it is freed in one step, without visiting
//! the objects. That is safe because each collection holds a borrow of the heap: the compiler
//! rejects dropping the heap while one of them lives.
//!
//! Any thread may allocate from a heap and free its blocks: `Heap` is `Send` and `Sync`.
//!
//! # Example: one heap per request
//!
//! A server builds each request's data in a heap of its own, frees what it is done with as it
//! goes, and drops the rest with the heap at the end of the request:
//!
//! ```
//! use allocator_api2::boxed::Box;
//! use allocator_api2::vec::Vec;
//! use hashbrown::{DefaultHashBuilder, HashMap};
//! use shardalloc::Heap;
//!
//! fn handle(request: &str) -> usize {
//!     let heap = Heap::new();
//!     // Words and their counts: the keys, the table and the vectors are all in `heap`.
//!     let mut counts = HashMap::with_hasher_in(DefaultHashBuilder::default(), &heap);
//!     for word in request.split_whitespace() {
//!         let mut key = Vec::new_in(&heap);
//!         key.extend_from_slice(word.as_bytes());
//!         *counts.entry(key).or_insert(0usize) += 1;
//!     }
//!     let header = Box::new_in([0u8; 256], &heap);
//!     drop(header); // freed now, its memory reused by the heap
//!     let distinct = counts.len();
//!     distinct
//!     // `counts` goes, then `heap`: its memory is freed at once, not key by key
//! }
//!
//! assert_eq!(handle("a b a c b a"), 3);
//! ```
//!
//! # Skipping the destructors
//!
//! Dropping a collection still visits every object in it to free it. For data that owns
//! nothing but memory, forget the collections instead and let the heap free everything: nothing
//! leaks, and the work no longer grows with the number of objects.
//!
//! ```
//! use allocator_api2::boxed::Box;
//! use allocator_api2::vec::Vec;
//!
//! let heap = shardalloc::Heap::new();
//! let mut nodes = Vec::new_in(&heap);
//! for i in 0..100_000u64 {
//!     nodes.push(Box::new_in(i, &heap));
//! }
//! core::mem::forget(nodes); // no per-box free...
//! drop(heap); // ...the heap's pages go at once
//! ```
//!
//! # What the compiler rejects
//!
//! Dropping the heap while a collection in it lives does not compile:
//!
//! ```compile_fail,E0505
//! use allocator_api2::vec::Vec;
//!
//! let heap = shardalloc::Heap::new();
//! let mut v = Vec::new_in(&heap);
//! v.push(1u32);
//! drop(heap); // error[E0505]: cannot move out of `heap` because it is borrowed
//! v.push(2);
//! ```
//!
//! Nor does a block that outlives its heap, even a leaked one:
//!
//! ```compile_fail,E0597
//! use allocator_api2::boxed::Box;
//!
//! let leaked: &mut u64;
//! {
//!     let heap = shardalloc::Heap::new();
//!     leaked = Box::leak(Box::new_in(7u64, &heap));
//! } // error[E0597]: `heap` does not live long enough
//! *leaked += 1;
//! ```
//!
//! # Alignment
//!
//! Every allocation gets the layout's alignment, up to [`ALIGNMENT_MAX`](crate::ALIGNMENT_MAX);
//! a larger alignment is an allocation error. Layouts that the C library's plain calls already
//! align (`mi_heap_malloc`, `mi_heap_zalloc`: 16 bytes, 8 for sizes up to 8) go through them,
//! the others through the aligned entry points with the layout's alignment
//! (`mi_heap_malloc_aligned`, `mi_heap_zalloc_aligned`, `mi_heap_realloc_aligned`).
//! Zero-sized requests get a dangling, aligned pointer and never reach the C library.

use core::alloc::Layout;
use core::ffi::c_void;
use core::fmt;
use core::ptr::NonNull;

use crate::ffi;

/// A heap of its own: an allocator whose blocks are all freed when it is dropped.
///
/// Allocate from it through `&Heap`, which implements allocator-api2's `Allocator` (feature
/// `allocator-api2`, on by default) and, with the `nightly` feature, the standard library's
/// `core::alloc::Allocator`. Blocks may be freed one by one; dropping the heap frees every
/// block still in it at once (`mi_heap_destroy`). See the [module docs](mod@crate::heap) for
/// the per-request pattern and why dropping is safe.
///
/// `Heap` is `Send` and `Sync`: threads may allocate from one heap at the same time and free
/// each other's blocks.
///
/// # Example
///
/// ```
/// use allocator_api2::vec::Vec;
/// use shardalloc::Heap;
///
/// let heap = Heap::new();
/// let mut squares = Vec::new_in(&heap);
/// squares.extend((0..1000u64).map(|i| i * i));
/// assert!(heap.contains(squares.as_ptr()));
/// drop(squares);
/// drop(heap); // frees whatever the heap still holds
/// ```
pub struct Heap {
    raw: NonNull<ffi::mi_heap_t>,
}

// SAFETY: a heap is a process-wide object of the C library: any thread may allocate from it,
// free its blocks, collect it, and destroy it (the latter only through `Drop`, which needs the
// `Heap` by value, so no other thread holds a `&Heap` then).
unsafe impl Send for Heap {}
// SAFETY: as for `Send`; every method that takes `&self` is one of the C library's heap calls
// that may run on several threads at once, except `stats`, which is `unsafe` for that reason.
unsafe impl Sync for Heap {}

impl Heap {
    /// A new, empty heap.
    ///
    /// # Panics
    ///
    /// When no memory is left for the heap's bookkeeping this calls
    /// [`handle_alloc_error`](alloc::alloc::handle_alloc_error), as `Box::new` does;
    /// [`Heap::try_new`] returns `None` instead.
    ///
    /// # Example
    ///
    /// ```
    /// let heap = shardalloc::Heap::new();
    /// let b = allocator_api2::boxed::Box::new_in(42u32, &heap);
    /// assert_eq!(*b, 42);
    /// ```
    #[must_use]
    pub fn new() -> Heap {
        match Heap::try_new() {
            Some(heap) => heap,
            // The C library's heap object: about a page of bookkeeping.
            None => alloc::alloc::handle_alloc_error(Layout::new::<[u8; 4096]>()),
        }
    }

    /// A new, empty heap, or `None` when no memory is left for its bookkeeping.
    ///
    /// # Example
    ///
    /// ```
    /// let heap = shardalloc::Heap::try_new().expect("out of memory");
    /// # drop(heap);
    /// ```
    #[must_use]
    pub fn try_new() -> Option<Heap> {
        // SAFETY: no arguments; returns an owned heap or null.
        let raw = unsafe { ffi::mi_heap_new() };
        NonNull::new(raw).map(|raw| Heap { raw })
    }

    /// The C library's handle of this heap, for use with the `mi_heap_*` functions of
    /// [`ffi`](mod@crate::ffi). It stays valid until the `Heap` is dropped; never pass it to
    /// `mi_heap_delete` or `mi_heap_destroy` (the `Heap` does that when dropped).
    ///
    /// # Example
    ///
    /// ```
    /// let heap = shardalloc::Heap::new();
    /// unsafe {
    ///     let p = shardalloc::ffi::mi_heap_malloc(heap.as_raw(), 100);
    ///     assert!(heap.contains(p));
    ///     shardalloc::ffi::mi_free(p);
    /// }
    /// ```
    #[inline]
    pub fn as_raw(&self) -> *mut ffi::mi_heap_t {
        self.raw.as_ptr()
    }

    /// True when `ptr` points into a block allocated in this heap and not freed (or into
    /// memory the heap holds for such blocks). Any pointer may be asked about: nothing is read
    /// through it.
    ///
    /// # Example
    ///
    /// ```
    /// use allocator_api2::boxed::Box;
    ///
    /// let (a, b) = (shardalloc::Heap::new(), shardalloc::Heap::new());
    /// let x = Box::new_in(1u64, &a);
    /// assert!(a.contains(&*x));
    /// assert!(!b.contains(&*x));
    /// assert!(!a.contains(&0u64));
    /// ```
    #[inline]
    pub fn contains<T: ?Sized>(&self, ptr: *const T) -> bool {
        // SAFETY: mi_heap_contains_block accepts any address (interior and unaligned ones
        // too): it finds the page through the allocator's segment map, never through `ptr`.
        unsafe { ffi::mi_heap_contains_block(self.as_raw(), ptr.cast::<c_void>()) }
    }

    /// Give back what the heap holds but does not use: its empty pages (with `force`, also
    /// those it keeps for reuse, and free memory goes back to the OS at once). Blocks in use
    /// are untouched. Never needed for correctness; useful for a long-lived heap after a phase
    /// that freed a lot.
    ///
    /// # Example
    ///
    /// ```
    /// use allocator_api2::vec::Vec;
    ///
    /// let heap = shardalloc::Heap::new();
    /// let v: Vec<u8, _> = Vec::with_capacity_in(1 << 20, &heap);
    /// drop(v);
    /// heap.collect(true);
    /// ```
    #[inline]
    pub fn collect(&self, force: bool) {
        // SAFETY: the heap is alive; collection leaves blocks in use as they are.
        unsafe { ffi::mi_heap_collect(self.as_raw(), force) }
    }

    /// End the heap without freeing its blocks: those still allocated stay valid and belong
    /// to the default heap from then on, to be freed with [`ShardAlloc`](crate::ShardAlloc)
    /// or `mi_free` like any other block of shardalloc.
    ///
    /// Collections built in the heap are gone by then (they borrow it), so this is for blocks
    /// allocated through raw pointers (`Allocator::allocate`, or the C functions with
    /// [`Heap::as_raw`]) that must outlive the heap. Dropping the heap instead frees them.
    ///
    /// # Example
    ///
    /// ```
    /// use allocator_api2::alloc::Allocator;
    /// use core::alloc::{GlobalAlloc, Layout};
    ///
    /// let heap = shardalloc::Heap::new();
    /// let layout = Layout::new::<[u32; 8]>();
    /// let p = (&heap).allocate(layout).unwrap().cast::<u32>();
    /// unsafe { p.write(5) };
    /// heap.delete();
    /// unsafe {
    ///     assert_eq!(p.read(), 5); // still valid
    ///     shardalloc::ShardAlloc.dealloc(p.as_ptr().cast(), layout);
    /// }
    /// ```
    pub fn delete(self) {
        let raw = self.as_raw();
        core::mem::forget(self);
        // SAFETY: the heap is alive and owned here; `self` is forgotten so it is not destroyed.
        unsafe { ffi::mi_heap_delete(raw) }
    }

    /// What the heap holds now: its blocks in use and the memory of its pages, from a walk
    /// over the heap's pages in every thread's part of it (`mi_heap_visit_blocks`), so it
    /// costs time in proportion to the number of pages, not of blocks.
    ///
    /// # Safety
    ///
    /// No other thread may allocate from this heap or free a block of it while the call runs:
    /// the walk reads the page lists those calls change. A heap that only the calling thread
    /// uses meets this, and so does a heap whose other users have finished (threads joined, or
    /// a scope of `std::thread::scope` ended).
    ///
    /// # Example
    ///
    /// ```
    /// use allocator_api2::vec::Vec;
    ///
    /// let heap = shardalloc::Heap::new();
    /// // SAFETY: only this thread uses `heap`.
    /// assert_eq!(unsafe { heap.stats() }.blocks, 0);
    /// let mut v = Vec::with_capacity_in(100, &heap);
    /// for i in 0..100u64 {
    ///     let mut inner = Vec::with_capacity_in(8, &heap);
    ///     inner.push(i);
    ///     v.push(inner);
    /// }
    /// let s = unsafe { heap.stats() };
    /// assert_eq!(s.blocks, 101); // the outer vector and its 100 inner ones
    /// assert!(s.bytes >= 100 * 64);
    /// drop(v);
    /// assert_eq!(unsafe { heap.stats() }.blocks, 0);
    /// ```
    pub unsafe fn stats(&self) -> HeapStats {
        let mut stats = HeapStats::default();
        // The caller keeps other threads out of the heap; `add_area` gets `stats` as its
        // argument and touches nothing else.
        ffi::mi_heap_visit_blocks(
            self.as_raw(),
            false,
            Some(add_area),
            (&mut stats as *mut HeapStats).cast::<c_void>(),
        );
        stats
    }
}

// The code behind the `Allocator` impls.
#[cfg(any(feature = "allocator-api2", feature = "nightly"))]
impl Heap {
    /// A zero-sized block: a dangling pointer with the layout's alignment, valid for 0 bytes.
    #[inline]
    fn dangling(layout: Layout) -> NonNull<[u8]> {
        // SAFETY: an alignment is never 0.
        let p = unsafe { NonNull::new_unchecked(layout.align() as *mut u8) };
        NonNull::slice_from_raw_parts(p, 0)
    }

    /// True when the C library's plain calls (`mi_heap_malloc`, `mi_heap_zalloc`) give `layout`'s
    /// alignment: their blocks are 16-byte aligned, 8-byte for sizes up to 8. Most layouts
    /// qualify, and the plain calls skip the aligned ones' tests of the alignment; for a layout
    /// known at compile time (a `Vec<u8>`'s, a `Vec<u64>`'s) this test folds away too.
    #[inline]
    fn plain_calls_align(layout: Layout) -> bool {
        layout.align() <= 8 || (layout.align() <= 16 && layout.size() > 8)
    }

    /// A block of `layout`, zeroed or not; `None` when the C library returns null.
    #[inline]
    fn allocate_block(&self, layout: Layout, zeroed: bool) -> Option<NonNull<[u8]>> {
        if layout.size() == 0 {
            return Some(Heap::dangling(layout));
        }
        // SAFETY: the heap is alive; a bad alignment or size makes the C library return null.
        let p = unsafe {
            match (Heap::plain_calls_align(layout), zeroed) {
                (true, false) => ffi::mi_heap_malloc(self.as_raw(), layout.size()),
                (true, true) => ffi::mi_heap_zalloc(self.as_raw(), layout.size()),
                (false, false) => {
                    ffi::mi_heap_malloc_aligned(self.as_raw(), layout.size(), layout.align())
                }
                (false, true) => {
                    ffi::mi_heap_zalloc_aligned(self.as_raw(), layout.size(), layout.align())
                }
            }
        };
        NonNull::new(p.cast::<u8>()).map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
    }

    /// Frees a block returned by `allocate_block` (or resized) with `layout`.
    ///
    /// # Safety
    ///
    /// `ptr` is a block of this heap currently allocated with `layout`.
    #[inline]
    unsafe fn deallocate_block(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            crate::free_with_layout(ptr.as_ptr(), layout)
        }
    }

    /// Grows the block at `ptr` (allocated with `old`) to `new`, keeping its `old.size()` bytes;
    /// with `zeroed`, the bytes past them are 0.
    ///
    /// # Safety
    ///
    /// `ptr` is a block of this heap currently allocated with `old`, and `new.size()` is at
    /// least `old.size()`. On success it is no longer allocated; on failure it stays allocated,
    /// unchanged.
    #[inline]
    unsafe fn grow_block(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Option<NonNull<[u8]>> {
        if old.size() != 0
            && new.size() <= crate::SIZED_FREE_MAX
            && old.align() <= crate::SIZED_FREE_MAX
        {
            // A small block grows into a new one: the old layout says how many bytes to copy
            // and lets the sized free skip the page look-up. The C realloc would look the
            // block up first, for a usable size the layout does not tell, to stay in place
            // only when the growth fits the block's size class: a Vec grown by pushes
            // (capacity doubling) rarely does, and then the look-up was for nothing. The tests
            // above are the sized free's own bounds (old.size() <= new.size() by the trait's
            // contract), so a `Vec`, whose alignment is a constant, pays one comparison.
            let q = self.allocate_block(new, false)?;
            let dst = q.cast::<u8>().as_ptr();
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), dst, old.size());
            if zeroed {
                core::ptr::write_bytes(dst.add(old.size()), 0, new.size() - old.size());
            }
            crate::sized::_sa_free_small(ptr.as_ptr().cast(), old.size());
            return Some(q);
        }
        self.resize_block(ptr, old, new, zeroed)
    }

    /// Moves or resizes the block at `ptr` (allocated with `old`) to `new`, keeping the first
    /// `min(old.size(), new.size())` bytes; with `zeroed`, the bytes past `old.size()` are 0.
    ///
    /// # Safety
    ///
    /// `ptr` is a block of this heap currently allocated with `old`. On success it is no longer
    /// allocated; on failure it stays allocated, unchanged.
    #[inline]
    unsafe fn resize_block(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Option<NonNull<[u8]>> {
        if old.size() == 0 {
            return self.allocate_block(new, zeroed);
        }
        if new.size() == 0 {
            self.deallocate_block(ptr, old);
            return Some(Heap::dangling(new));
        }
        // The C library keeps the block in place when it fits and is aligned for `new`,
        // otherwise moves it to a block of `new`'s alignment; on failure it leaves it as it is.
        let p = ffi::mi_heap_realloc_aligned(
            self.as_raw(),
            ptr.as_ptr().cast(),
            new.size(),
            new.align(),
        )
        .cast::<u8>();
        let p = NonNull::new(p)?;
        if zeroed && new.size() > old.size() {
            // Bytes past the old size may hold anything (the block's slack, or a copy of it).
            core::ptr::write_bytes(p.as_ptr().add(old.size()), 0, new.size() - old.size());
        }
        Some(NonNull::slice_from_raw_parts(p, new.size()))
    }
}

/// What a [`Heap`] holds, from [`Heap::stats`].
///
/// # Example
///
/// ```
/// let heap = shardalloc::Heap::new();
/// let b = allocator_api2::boxed::Box::new_in([0u8; 1000], &heap);
/// // SAFETY: only this thread uses `heap`.
/// let s = unsafe { heap.stats() };
/// assert_eq!(s.blocks, 1);
/// assert!(s.bytes >= 1000 && s.committed >= s.bytes);
/// # drop(b);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Blocks in use.
    pub blocks: usize,
    /// Bytes of the blocks in use, each counted at its block size (its size class), which is
    /// at least the size it was allocated with.
    pub bytes: usize,
    /// Bytes of the heap's pages that are backed by memory: blocks in use, free blocks the heap
    /// keeps for its next allocations.
    pub committed: usize,
    /// Pages (areas of blocks of one size) the heap holds; each huge block is one.
    pub pages: usize,
}

/// mi_heap_visit_blocks's visitor: adds one area (called with a null `block`) to the
/// `HeapStats` that `arg` points to. Per-block calls, had they been asked for, are ignored.
unsafe extern "C" fn add_area(
    _heap: *const ffi::mi_heap_t,
    area: *const ffi::mi_heap_area_t,
    block: *mut c_void,
    _block_size: usize,
    arg: *mut c_void,
) -> bool {
    if block.is_null() && !area.is_null() {
        let stats = &mut *arg.cast::<HeapStats>();
        let area = &*area;
        stats.blocks += area.used;
        stats.bytes += area.used * area.block_size;
        stats.committed += area.committed;
        stats.pages += 1;
    }
    true
}

impl Default for Heap {
    /// The same as [`Heap::new`].
    ///
    /// # Example
    ///
    /// ```
    /// let heap = shardalloc::Heap::default();
    /// # drop(heap);
    /// ```
    fn default() -> Heap {
        Heap::new()
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap").field("raw", &self.raw).finish()
    }
}

impl Drop for Heap {
    /// Frees every block still allocated in the heap, and the heap (`mi_heap_destroy`).
    fn drop(&mut self) {
        // SAFETY: dropping needs the heap by value, so nothing borrows it: every collection
        // and leaked reference made with `&Heap` is gone, and the blocks freed here are
        // reachable by nobody but raw pointers, whose owners were told they end with the heap.
        unsafe { ffi::mi_heap_destroy(self.as_raw()) }
    }
}

#[cfg(any(feature = "allocator-api2", feature = "nightly"))]
/// The impl of `Allocator` and `AllocError` as named where it is expanded: allocator-api2's or
/// the standard library's, the same trait declared twice.
macro_rules! impl_allocator {
    () => {
        // SAFETY: blocks come from this heap's C calls with the layout's size and alignment
        // and stay valid until freed or until the heap is dropped, which the borrow of `&Heap`
        // held by the allocator's users postpones past them; zero-sized blocks are dangling
        // and never passed to the C library. `&Heap` is Copy: every copy is the same heap.
        unsafe impl Allocator for &Heap {
            #[inline]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                self.allocate_block(layout, false).ok_or(AllocError)
            }

            #[inline]
            fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                self.allocate_block(layout, true).ok_or(AllocError)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                self.deallocate_block(ptr, layout)
            }

            #[inline]
            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                self.grow_block(ptr, old, new, false).ok_or(AllocError)
            }

            #[inline]
            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                self.grow_block(ptr, old, new, true).ok_or(AllocError)
            }

            #[inline]
            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                self.resize_block(ptr, old, new, false).ok_or(AllocError)
            }
        }
    };
}

// With `nightly`, allocator-api2's trait is the standard library's (its own `nightly` feature,
// which ours turns on), so one impl serves both.
#[cfg(all(feature = "allocator-api2", not(feature = "nightly")))]
mod allocator_api2_impl {
    use super::*;
    use allocator_api2::alloc::{AllocError, Allocator};
    impl_allocator!();
}

#[cfg(feature = "nightly")]
mod nightly_impl {
    use super::*;
    use core::alloc::{AllocError, Allocator};
    impl_allocator!();
}
