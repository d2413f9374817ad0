//! A shared library (cdylib) with `ShardAlloc` as its global allocator, meant to be loaded
//! with `dlopen` (tests/dlopen.rs does). Its exported function allocates and frees from the
//! calling thread and from threads of its own, and reports whether its memory was
//! shardalloc's. shardalloc's thread-local heap pointer uses the initial-exec TLS model by
//! default, which glibc serves for a library loaded late from its static-TLS surplus; the
//! `dynamic-tls` feature switches to a model any library may use (see build.rs).
//!
//! Build: `cargo build --example plugin` (target/<profile>/examples/libplugin.so).

use shardalloc::ShardAlloc;
#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// Builds strings and vectors on `threads` threads (and this one), hands them across
/// threads, checks their contents and frees them; returns the number of items checked, or
/// -1 if a check failed (a block not from shardalloc included).
#[no_mangle]
pub extern "C" fn plugin_work(threads: u32) -> i64 {
    let local: Vec<String> = (0..10_000).map(|i| format!("item {i}")).collect();
    if !shardalloc::is_in_heap(local.as_ptr()) || !shardalloc::is_in_heap(local[5].as_ptr()) {
        return -1;
    }
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let v: Vec<u64> = (0..50_000).map(|i| i * u64::from(t + 1)).collect();
                let in_heap = shardalloc::is_in_heap(v.as_ptr());
                (v, in_heap)
            })
        })
        .collect();
    let mut checked = 0i64;
    for (t, handle) in handles.into_iter().enumerate() {
        let Ok((v, in_heap)) = handle.join() else {
            return -1;
        };
        // freed here, on another thread than the one that allocated it
        if !in_heap
            || v.iter()
                .enumerate()
                .any(|(i, &x)| x != i as u64 * (t as u64 + 1))
        {
            return -1;
        }
        checked += v.len() as i64;
    }
    // and the other way: blocks of this thread freed by new threads
    let moved = local.clone();
    let ok = std::thread::spawn(move || {
        moved
            .iter()
            .enumerate()
            .all(|(i, s)| *s == format!("item {i}"))
    })
    .join()
    .unwrap_or(false);
    if !ok {
        return -1;
    }
    checked + local.len() as i64
}
