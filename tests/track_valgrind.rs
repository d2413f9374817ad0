//! The `track-valgrind` feature: valgrind's memcheck sees shardalloc's blocks as it sees
//! malloc's. A Rust program with `ShardAlloc` as its global allocator
//! (`tests/programs/track_probe`, a package of its own built with the feature into a folder
//! under Cargo's target directory) runs under `valgrind --leak-check=full`: a read of a freed
//! block is an "Invalid read", forgotten blocks are "definitely lost", and a clean workload
//! (vectors, strings, a hash map, threads freeing each other's blocks) has no error at all.
//!
//! Without valgrind installed the tests say so and pass; `.ci/run` installs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;
use common::{profile, root, Run};

/// The exit status valgrind gives a program in which it found errors.
const ERROR_EXIT: i32 = 99;

fn valgrind_installed() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Builds the probe (once per test process) in this test's profile; its path.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("track_probe");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(root().join("tests/programs/track_probe/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
        assert!(
            out.status.success(),
            "building the probe failed ({}): {cmd:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        target.join(profile()).join("track_probe")
    })
}

/// The probe's `case` under memcheck; None (with a message) when valgrind is missing.
fn run_probe(case: &str) -> Option<Run> {
    if !valgrind_installed() {
        eprintln!(
            "skipped: valgrind is not installed (Debian package `valgrind`; .ci/run installs it)"
        );
        return None;
    }
    let out = Command::new("valgrind")
        .arg(format!("--error-exitcode={ERROR_EXIT}"))
        .arg("--leak-check=full")
        .arg(probe())
        .arg(case)
        .output()
        .unwrap_or_else(|e| panic!("cannot run valgrind: {e}"));
    Some(Run::from(out))
}

/// The block count of memcheck's "definitely lost: N bytes in M blocks" line.
fn definitely_lost_blocks(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.contains("definitely lost:"))?;
    let blocks = line.split(" in ").nth(1)?.split_whitespace().next()?;
    blocks.replace(',', "").parse().ok()
}

#[test]
fn use_after_free_is_an_invalid_read() {
    let Some(run) = run_probe("use-after-free") else {
        return;
    };
    assert!(
        run.stderr.contains("Invalid read of size 8"),
        "memcheck did not report the read of the freed block\n{}",
        run.explain()
    );
    assert!(
        run.stderr.contains("track_probe::use_after_free"),
        "the invalid read is not the probe's\n{}",
        run.explain()
    );
    assert_eq!(run.status.code(), Some(ERROR_EXIT), "{}", run.explain());
}

#[test]
fn forgotten_blocks_are_definitely_lost() {
    let Some(run) = run_probe("leak") else {
        return;
    };
    let lost = definitely_lost_blocks(&run.stderr);
    assert!(
        lost.is_some_and(|n| n > 0),
        "memcheck found no definitely lost block (parsed: {lost:?})\n{}",
        run.explain()
    );
    assert_eq!(run.status.code(), Some(ERROR_EXIT), "{}", run.explain());
}

#[test]
fn clean_workload_has_no_errors() {
    let Some(run) = run_probe("clean") else {
        return;
    };
    assert!(
        run.stderr.contains("ERROR SUMMARY: 0 errors"),
        "memcheck reported errors in a clean run\n{}",
        run.explain()
    );
    assert!(run.stdout.starts_with("total "), "{}", run.explain());
    assert!(run.status.success(), "{}", run.explain());
}
