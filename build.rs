//! Builds the C allocator in `c_src/` into a static library with the `cc` crate.
//!
//! One list of sources: every `c_src/src/*.c` except `override.c` (the malloc/free exports of
//! the shared library, which a Rust binary must not get by default), the same set that
//! `c_src/Makefile` builds. Everything about the target is read from Cargo's `CARGO_CFG_*`
//! variables and the profile from its environment, never from `cfg!`, which would describe the
//! machine and profile that build this script rather than the ones it builds for.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let include = root.join("c_src/include");
    let src = root.join("c_src/src");

    // Only the inputs of the library: watching all of c_src would rebuild the crate whenever
    // the standalone make build writes to c_src/build.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=c_src/include");
    println!("cargo:rerun-if-changed=c_src/src");

    // The C core is written for Linux (c_src/src/platform.h refuses other systems too); stop
    // here with a plain message rather than with a C compiler error.
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let pointer_width = env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    if os != "linux" {
        panic!(
            "shardalloc supports Linux only (64-bit: x86-64, aarch64); this target's OS is \
             `{os}`, and Windows, macOS and other systems are not supported"
        );
    }
    if pointer_width != "64" {
        panic!(
            "shardalloc supports 64-bit Linux only; this target has {pointer_width}-bit pointers"
        );
    }

    // The profile's debug-assertions setting, as Cargo reports it for the target. `DEBUG` only
    // says whether debug info is generated, which a release profile may also turn on for
    // profiling; that must not switch on the allocator's assertions.
    let debug = env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some();

    let sources = c_sources(&src);
    if sources.is_empty() {
        panic!("no C sources found in {}", src.display());
    }

    let mut build = cc::Build::new();
    build
        .include(&include)
        .include(&src)
        .std("gnu11")
        .pic(true)
        .flag("-pthread")
        // The private symbol prefix: shardalloc.h includes shardalloc_rename.h, so every
        // public mi_ function is compiled as shardalloc_mi_... (src/ffi.rs links to those).
        .define("SHARDALLOC_RENAME", None)
        .define("SA_DEBUG", if debug { "1" } else { "0" });
    // Thread-local storage. By default the initial-exec model: the malloc fast path reads the
    // thread's heap with one `%fs:` load (mi_malloc_aligned: 14 instructions, callgrind,
    // x86-64 release). Under the `dynamic-tls` feature the general-dynamic model with TLS
    // descriptors (gnu2) instead, for a cdylib that is loaded with dlopen into a process that
    // has used up glibc's small surplus of static TLS: the access then works in any library.
    // Linked into an executable the linker relaxes it to a `%fs:` access again, but the
    // function keeps the frame of the call it might have made (20 instructions instead of
    // 14, measured the same way); free is unchanged (it reads the thread pointer, not the
    // variable). The LD_PRELOAD library (Makefile) always uses initial-exec.
    if env::var_os("CARGO_FEATURE_DYNAMIC_TLS").is_some() {
        build.define("SA_TLS_DYNAMIC", None);
        if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
            build.flag_if_supported("-mtls-dialect=gnu2");
        }
    }
    // Memory checkers (c_src/src/track.h): the hooks are empty unless one of these is defined.
    if env::var_os("CARGO_FEATURE_TRACK_VALGRIND").is_some() {
        build.define("SA_TRACK_VALGRIND", None);
    }
    // Secure mode (c_src/src/secure.h): hardened free lists, guard pages, checked frees.
    if env::var_os("CARGO_FEATURE_SECURE").is_some() {
        build.define("SA_SECURE", "1");
    }
    if env::var_os("CARGO_FEATURE_TRACK_ASAN").is_some() {
        build.define("SA_TRACK_ASAN", None);
    }
    // Under `override`, override.c (malloc/free/new/delete) goes into a second archive that is
    // linked whole: no symbol of it is referenced from Rust, so a plain archive would leave it
    // out. Emitted before the main archive, whose symbols it uses.
    if env::var_os("CARGO_FEATURE_OVERRIDE").is_some() {
        build
            .clone()
            .file(src.join("override.c"))
            // malloc and friends are defined here: calls to them are not built-ins
            .flag("-fno-builtin")
            .cargo_metadata(false)
            .compile("shardalloc_override");
        println!("cargo:rustc-link-lib=static:+whole-archive=shardalloc_override");
        println!(
            "cargo:rustc-link-search=native={}",
            env::var("OUT_DIR").expect("OUT_DIR")
        );
    }
    build.files(&sources).compile("shardalloc");

    println!("cargo:rustc-link-lib=pthread");

    // For crates that depend on this one (DEP_SHARDALLOC_INCLUDE) and for our own tests, which
    // inspect the archive's symbols.
    println!("cargo:include={}", include.display());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!(
        "cargo:rustc-env=SHARDALLOC_STATIC_LIB={}",
        out_dir.join("libshardalloc.a").display()
    );
}

/// `dir/*.c` except `override.c`, sorted so that the archive is built the same way each time.
fn c_sources(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut sources: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "c")
                && path.file_name().is_some_and(|name| name != "override.c")
        })
        .collect();
    sources.sort();
    sources
}
