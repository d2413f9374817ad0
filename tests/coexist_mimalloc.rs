//! shardalloc and the `mimalloc` crate in one binary. Both libraries implement the same C API
//! (`mi_malloc`, `mi_free`, ...); shardalloc's copy is linked under private names, so this
//! binary links at all, and each call reaches its own library.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use shardalloc::ShardAlloc;

// shardalloc serves the binary; mimalloc is called explicitly below.
#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

#[test]
fn both_allocators_in_one_binary() {
    let layout = Layout::from_size_align(256, 16).unwrap();
    let mut from_mimalloc = Vec::new();
    let mut from_shardalloc = Vec::new();
    for i in 0..1000usize {
        unsafe {
            let m = MiMalloc.alloc(layout);
            let s = ShardAlloc.alloc(layout);
            assert!(!m.is_null() && !s.is_null());
            m.write_bytes(i as u8, 256);
            s.write_bytes(!(i as u8), 256);
            from_mimalloc.push(m);
            from_shardalloc.push(s);
        }
    }
    for (i, (&m, &s)) in from_mimalloc.iter().zip(&from_shardalloc).enumerate() {
        // Each pointer belongs to its own allocator's memory and to no other.
        assert!(shardalloc::is_in_heap(s));
        assert!(
            !shardalloc::is_in_heap(m),
            "mimalloc's block {m:p} is in shardalloc's memory"
        );
        unsafe {
            assert!(libmimalloc_sys::mi_is_in_heap_region(m.cast()));
            assert!(!libmimalloc_sys::mi_is_in_heap_region(s.cast()));
            assert!(std::slice::from_raw_parts(m, 256)
                .iter()
                .all(|&b| b == i as u8));
            assert!(std::slice::from_raw_parts(s, 256)
                .iter()
                .all(|&b| b == !(i as u8)));
        }
    }
    for (m, s) in from_mimalloc.into_iter().zip(from_shardalloc) {
        unsafe {
            MiMalloc.dealloc(m, layout);
            ShardAlloc.dealloc(s, layout);
        }
    }
}

#[test]
fn each_version_call_reaches_its_own_library() {
    let mimalloc_version = unsafe { libmimalloc_sys::mi_version() };
    assert_eq!(shardalloc::version(), shardalloc::ffi::SHARDALLOC_VERSION);
    assert_ne!(
        mimalloc_version as u32,
        shardalloc::version(),
        "mi_version resolved to the same library for both"
    );
}

#[test]
fn collections_on_shardalloc_beside_mimalloc_blocks() {
    // The global allocator (shardalloc) serves std collections while mimalloc blocks are live.
    let layout = Layout::from_size_align(4096, 4096).unwrap();
    let m = unsafe { MiMalloc.alloc(layout) };
    assert!(!m.is_null());
    let v: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    assert!(shardalloc::is_in_heap(v.as_ptr()));
    assert_eq!(v[9_999], "9999");
    unsafe { MiMalloc.dealloc(m, layout) };
}
