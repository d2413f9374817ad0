//! `SA_TRACK=asan`: AddressSanitizer sees shardalloc's free memory. The library is built with
//! `make -C c_src lib SA_TRACK=asan` (not instrumented itself) into a folder under Cargo's
//! target directory and linked into `tests/programs/track_asan.c`, built with
//! `-fsanitize=address`, which calls the mi_* API directly. A read of a freed block and a
//! write past the usable end of a block into the next (free) one must be reported by ASan and
//! fail the program; a clean run over every kind of allocation must pass without a report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;
use common::{make_c_src, root, run_ok, work_dir, Run};

/// Builds the tracked library and the program (once per test process); the program's path.
fn program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let dir = work_dir("track_asan");
        let lib_dir = dir.join("lib");
        run_ok(
            make_c_src("lib", &lib_dir)
                .arg("SA_TRACK=asan")
                .arg(format!("SA_DEBUG={}", u8::from(cfg!(debug_assertions)))),
            "make (libshardalloc.a with SA_TRACK=asan)",
        );
        let program = dir.join("track_asan");
        let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        run_ok(
            Command::new(&compiler)
                .args(["-O1", "-g", "-Wall", "-Wextra", "-pthread"])
                .args(["-fsanitize=address", "-fno-omit-frame-pointer", "-I"])
                .arg(root().join("c_src/include"))
                .arg(root().join("tests/programs/track_asan.c"))
                .arg(lib_dir.join("libshardalloc.a"))
                .arg("-o")
                .arg(&program),
            "compiling tests/programs/track_asan.c with -fsanitize=address (gcc with libasan)",
        );
        program
    })
}

fn run(case: &str) -> Run {
    let out = Command::new(program())
        .arg(case)
        // leaks of malloc are not what this test is about
        .env("ASAN_OPTIONS", "detect_leaks=0")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the program: {e}"));
    Run::from(out)
}

/// ASan's report for memory the allocator poisoned (use-after-poison), or for a freed heap
/// block should a runtime call it that; `access` is READ or WRITE.
fn assert_reported(run: &Run, access: &str, function: &str) {
    const REPORTS: [&str; 2] = [
        "ERROR: AddressSanitizer: use-after-poison",
        "ERROR: AddressSanitizer: heap-use-after-free",
    ];
    assert!(
        REPORTS.iter().any(|report| run.stderr.contains(report)),
        "ASan did not report the misuse\n{}",
        run.explain()
    );
    assert!(
        run.stderr.contains(&format!("{access} of size 1")),
        "not a {access} of one byte\n{}",
        run.explain()
    );
    assert!(
        run.stderr.contains(&format!("in {function} ")),
        "the report is not about {function}\n{}",
        run.explain()
    );
    assert!(!run.status.success(), "{}", run.explain());
}

#[test]
fn use_after_free_is_reported() {
    let run = run("use-after-free");
    assert_reported(&run, "READ", "use_after_free");
}

#[test]
fn write_past_the_block_into_a_free_one_is_reported() {
    let run = run("overflow");
    assert_reported(&run, "WRITE", "overflow");
}

#[test]
fn clean_run_passes() {
    let run = run("clean");
    assert!(
        !run.stderr.contains("AddressSanitizer"),
        "ASan reported an error in a clean run\n{}",
        run.explain()
    );
    assert!(run.status.success(), "{}", run.explain());
    assert_eq!(run.stdout, "clean\n", "{}", run.explain());
}
