//! Under the `override` feature the Rust binary itself exports `malloc`, `free` and the rest
//! (c_src/src/override.c), so C code in the process allocates from shardalloc: here glibc's
//! own `strdup`, `calloc` through libc and C++-free C calls, checked with `is_in_heap`.
//! Built only with `--features override` (`required-features` in Cargo.toml).

use std::ffi::{c_char, c_void, CStr};

extern "C" {
    fn strdup(s: *const c_char) -> *mut c_char;
    fn malloc(size: usize) -> *mut c_void;
    fn calloc(count: usize, size: usize) -> *mut c_void;
    fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn posix_memalign(p: *mut *mut c_void, align: usize, size: usize) -> i32;
    fn malloc_usable_size(p: *mut c_void) -> usize;
}

#[test]
fn libc_internal_allocations_come_from_shardalloc() {
    // strdup is libc's: its call to malloc binds to the executable's export.
    let original = c"allocated inside glibc";
    let copy = unsafe { strdup(original.as_ptr()) };
    assert!(!copy.is_null());
    assert!(
        shardalloc::is_in_heap(copy),
        "glibc's strdup did not allocate from shardalloc: is malloc exported?"
    );
    assert_eq!(unsafe { CStr::from_ptr(copy) }, original);
    unsafe { free(copy.cast()) };
}

#[test]
fn the_malloc_family_is_shardalloc() {
    unsafe {
        let p = malloc(100);
        assert!(shardalloc::is_in_heap(p));
        assert!(malloc_usable_size(p) >= 100);
        let p = realloc(p, 100_000);
        assert!(shardalloc::is_in_heap(p));
        free(p);
        let z = calloc(1000, 8).cast::<u8>();
        assert!(shardalloc::is_in_heap(z));
        assert!(std::slice::from_raw_parts(z, 8000).iter().all(|&b| b == 0));
        free(z.cast());
        let mut a = std::ptr::null_mut();
        assert_eq!(posix_memalign(&mut a, 4096, 5000), 0);
        assert_eq!(a as usize % 4096, 0);
        assert!(shardalloc::is_in_heap(a));
        free(a);
    }
}

#[test]
fn rust_system_allocator_goes_through_it_too() {
    // std's System allocator calls malloc: with the override that is shardalloc as well.
    use std::alloc::{GlobalAlloc, Layout, System};
    let layout = Layout::from_size_align(256, 8).unwrap();
    unsafe {
        let p = System.alloc(layout);
        assert!(shardalloc::is_in_heap(p));
        System.dealloc(p, layout);
    }
}

#[test]
fn threads_free_what_libc_allocated() {
    let blocks: Vec<usize> = (0..1000)
        .map(|i| unsafe { strdup(format!("block {i}\0").as_ptr().cast()) } as usize)
        .collect();
    std::thread::spawn(move || {
        for (i, &b) in blocks.iter().enumerate() {
            let s = unsafe { CStr::from_ptr(b as *const c_char) };
            assert_eq!(s.to_str().unwrap(), format!("block {i}"));
            assert!(shardalloc::is_in_heap(b as *const u8));
            unsafe { free(b as *mut c_void) };
        }
    })
    .join()
    .unwrap();
}
