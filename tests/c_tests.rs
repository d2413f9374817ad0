//! Runs every C test program in `c_src/test/` as its own test case, named after its file
//! (`c_src/test/test_api.c` is the case `test_api`).
//!
//! The programs are found at run time and built once, by `make -C c_src tests`, into a folder
//! under Cargo's target directory, in the configuration that matches this test binary's
//! profile (`SA_DEBUG=1` with debug assertions). A case passes when its program exits 0 and
//! fails with the program's output otherwise.
//!
//! Every program also runs built with `SA_SECURE=1` (the secure mode, `c_src/src/secure.h`), as
//! the case `secure::<name>`, from a build folder of its own.
//!
//! Works under `cargo test` (one process, cases on threads) and under `cargo nextest` (one
//! process per case): a lock file makes concurrent processes build one after another, and
//! make finds the later builds up to date. Listing the cases (`--list`) builds nothing.

// rust-version (Cargo.toml) is the library's; tests and benches may use newer std APIs.
#![allow(clippy::incompatible_msrv)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

/// A program that runs longer than this is killed and its case fails.
const TIMEOUT: Duration = Duration::from_secs(300);
/// At most this much of a failing program's output goes into the failure message.
const MAX_REPORTED_OUTPUT: usize = 64 * 1024;

fn main() {
    let args = Arguments::from_args();
    let trials = match test_programs(&c_src().join("test")) {
        Ok(names) => [false, true]
            .into_iter()
            .flat_map(|secure| {
                names.clone().into_iter().map(move |name| {
                    let case = if secure {
                        format!("secure::{name}")
                    } else {
                        name.clone()
                    };
                    Trial::test(case, move || run_program(&name, secure))
                })
            })
            .collect(),
        Err(e) => vec![Trial::test("c_tests_discovery", move || Err(e.into()))],
    };
    libtest_mimic::run(&args, trials).exit();
}

fn c_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c_src")
}

/// The names (without `.c`) of the files `test_*.c` in `dir`, sorted.
fn test_programs(dir: &Path) -> Result<Vec<String>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some(stem) = file_name.strip_suffix(".c") {
            if stem.starts_with("test_") {
                names.push(stem.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Where this profile's programs are built (the secure ones in a folder of their own).
fn build_dir(secure: bool) -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("c_tests")
        .join(profile);
    if secure {
        dir.join("secure")
    } else {
        dir
    }
}

/// Builds all programs once per process and configuration; every case waits for this and
/// shares its result.
fn build_once(secure: bool) -> &'static Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static BUILT_SECURE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if secure {
        BUILT_SECURE.get_or_init(|| build(true))
    } else {
        BUILT.get_or_init(|| build(false))
    }
}

fn build(secure: bool) -> Result<PathBuf, String> {
    let dir = build_dir(secure);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    // Held until the build ends (the lock is released when the file is closed).
    let lock_path = dir.join(".build.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut make = Command::new(std::env::var_os("MAKE").unwrap_or_else(|| "make".into()));
    make.arg("-C")
        .arg(c_src())
        .arg(format!("-j{jobs}"))
        .arg("tests")
        .arg(format!("BUILD_DIR={}", dir.display()))
        .arg(format!("SA_DEBUG={}", u8::from(cfg!(debug_assertions))))
        .arg(format!("SA_SECURE={}", u8::from(secure)))
        // A make that runs `cargo test` must not hand its job server to this one.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    let output = make
        .output()
        .map_err(|e| format!("cannot run make: {e} (is make installed?)"))?;
    if !output.status.success() {
        return Err(format!(
            "building the C tests failed ({}): {:?}\n{}{}",
            output.status,
            make,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(dir)
}

fn run_program(name: &str, secure: bool) -> Result<(), Failed> {
    let dir = build_once(secure)
        .as_ref()
        .map_err(|e| Failed::from(e.as_str()))?;
    let program = dir.join(name);
    if !program.is_file() {
        return Err(format!(
            "{} was not built: `make -C c_src tests` should build every test_*.c",
            program.display()
        )
        .into());
    }

    // stdout and stderr go to one file, so the log keeps their order.
    let log_path = dir.join(format!("{name}.log"));
    let log = File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(&program)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;

    let started = Instant::now();
    let status: Option<ExitStatus> = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("{name} failed ({status})\n{}", read_tail(&log_path)).into()),
        None => Err(format!(
            "{name} did not finish within {} s and was killed\n{}",
            TIMEOUT.as_secs(),
            read_tail(&log_path)
        )
        .into()),
    }
}

/// The end of a program's log: enough to see what failed without flooding the report.
fn read_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(MAX_REPORTED_OUTPUT);
            let cut = if start > 0 {
                "[... output cut ...]\n"
            } else {
                ""
            };
            format!(
                "--- output ({}) ---\n{cut}{}",
                path.display(),
                String::from_utf8_lossy(&bytes[start..])
            )
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
