//! Helpers the integration tests share: paths, building with `make -C c_src`, running a
//! command or this test binary again, and reading the process's memory from /proc.
//!
//! Each test file includes this with `mod common;` and uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

/// The crate's root folder.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `debug` or `release`: the profile of this test binary (the C code's `SA_DEBUG` follows it).
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// A folder of the test named `test` for this profile's builds and files (created).
pub fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(test)
        .join(profile());
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `make -C c_src -j2 <target> BUILD_DIR=<build_dir>`, to complete with variables. A make
/// that runs `cargo test` must not hand its job server to this one.
pub fn make_c_src(target: &str, build_dir: &Path) -> Command {
    let mut make = Command::new(std::env::var_os("MAKE").unwrap_or_else(|| "make".into()));
    make.arg("-C")
        .arg(root().join("c_src"))
        .arg("-j2")
        .arg(target)
        .arg(format!("BUILD_DIR={}", build_dir.display()))
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    make
}

/// What a finished process printed, as text.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit status and both outputs, for a failure message.
    pub fn explain(&self) -> String {
        format!(
            "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `cmd` to the end; panics with `what`, the command and everything it printed unless it
/// succeeds.
pub fn run_ok(cmd: &mut Command, what: &str) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} ({cmd:?})"));
    let run = Run::from(out);
    assert!(
        run.status.success(),
        "{what} failed: {cmd:?}\n{}",
        run.explain()
    );
    run
}

/// This test binary again, running only the test `test` with its output shown: the way to
/// run a case in a fresh process (with options from the environment, or RSS of its own).
pub fn this_test_again(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    cmd
}

/// A `kB` field of /proc/self/status (`VmRSS:`, `VmHWM:` ...), in KiB.
pub fn proc_status_kib(field: &str) -> usize {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The resident set size now, in bytes (the kernel's view, independent of the allocator's).
pub fn rss() -> usize {
    proc_status_kib("VmRSS:") * 1024
}

/// Bytes in MiB, for messages.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
