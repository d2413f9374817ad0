//! A cdylib with `ShardAlloc` as its global allocator (examples/plugin.rs) loads with
//! `dlopen`, works (allocations on its threads and ours, freed across threads), unloads with
//! `dlclose`, and loads again. `cargo test` builds the example before running this;
//! `cargo test --test dlopen` alone does not, and the test then says so.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;

extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
    fn dlerror() -> *mut c_char;
}

/// target/<profile>/examples/libplugin.so, next to this test's target/<profile>/deps/.
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = profile_dir.join("examples").join("libplugin.so");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds it; alone, run `cargo build --example plugin{}` first",
        path.display(),
        if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        }
    );
    path
}

fn last_error() -> String {
    let e = unsafe { dlerror() };
    if e.is_null() {
        "no dlerror".into()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

#[test]
fn cdylib_with_shardalloc_loads_works_and_unloads() {
    let path = CString::new(plugin_path().to_str().unwrap()).unwrap();
    for round in 0..3 {
        let handle = unsafe { dlopen(path.as_ptr(), RTLD_NOW | RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen failed: {}", last_error());
        let sym = unsafe { dlsym(handle, c"plugin_work".as_ptr()) };
        assert!(!sym.is_null(), "no plugin_work: {}", last_error());
        let work: extern "C" fn(u32) -> i64 = unsafe { std::mem::transmute(sym) };
        // called from this thread and from another one of the loading process
        assert_eq!(work(4), 4 * 50_000 + 10_000, "round {round}");
        let from_thread = std::thread::spawn(move || work(2)).join().unwrap();
        assert_eq!(from_thread, 2 * 50_000 + 10_000, "round {round}");
        assert_eq!(unsafe { dlclose(handle) }, 0, "dlclose: {}", last_error());
    }
}
