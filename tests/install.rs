//! `make -C c_src install` into a temporary prefix, then the C program
//! `tests/programs/installed/prog.c` (the README's C example with checks) is built against the
//! installed copy the two ways a C project finds it, and run:
//!
//! - with `pkg-config --cflags --libs shardalloc` (the shared library, which replaces malloc);
//! - with CMake's `find_package(shardalloc)`, through each imported target
//!   (`shardalloc::shardalloc`, `shardalloc::static`).
//!
//! The program checks that `mi_malloc` is shardalloc's, that `malloc` is replaced exactly when
//! the shared library is linked, and that the shared library mapped into it is the installed
//! `libshardalloc.so.<version>`. A test whose tool (`pkg-config`, `cmake`) is missing says so
//! and passes; CI installs both.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;
use common::{make_c_src, root, run_ok, Run};

fn work_dir() -> PathBuf {
    common::work_dir("install")
}

/// Runs `cmd`; panics with everything it printed when it fails.
fn run(cmd: &mut Command) -> Run {
    run_ok(cmd, "a command")
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: `{tool}` is not installed (Debian: apt-get install {tool})");
    }
    found
}

/// The prefix shardalloc was installed into, once per test process (fresh each run).
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let dir = work_dir();
        let prefix = dir.join("prefix");
        let _ = fs::remove_dir_all(&prefix);
        run(make_c_src("install", &dir.join("build")).arg(format!("PREFIX={}", prefix.display())));
        prefix
    })
}

/// The installed shared library's real file, which the shared program must have mapped.
fn installed_shared_library() -> PathBuf {
    let lib = prefix()
        .join("lib")
        .join(format!("libshardalloc.so.{}", env!("CARGO_PKG_VERSION")));
    assert!(lib.is_file(), "{} was not installed", lib.display());
    lib
}

fn program() -> PathBuf {
    root().join("tests/programs/installed/prog.c")
}

/// Runs a program built against the installed copy and checks what it reports.
fn check_program(exe: &Path, shared: bool) {
    let mut cmd = Command::new(exe);
    if shared {
        cmd.arg("shared").arg(installed_shared_library());
    } else {
        cmd.arg("static");
    }
    let out = run(&mut cmd);
    let stdout = &out.stdout;
    let expected = format!(
        "shardalloc {} ok ({})",
        // SHARDALLOC_VERSION: major*100 + minor*10 + patch
        env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|part| part.parse::<u32>().unwrap())
            .fold(0, |acc, part| acc * 10 + part),
        if shared { "shared" } else { "static" }
    );
    assert!(stdout.contains(&expected), "{exe:?} printed {stdout}");
}

#[test]
fn installed_layout() {
    let prefix = prefix();
    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let major = version.split('.').next().unwrap();
    for file in [
        "include/shardalloc.h",
        "include/shardalloc_rename.h",
        "include/mimalloc.h",
        "lib/libshardalloc.a",
        "lib/pkgconfig/shardalloc.pc",
        "lib/cmake/shardalloc/shardalloc-config.cmake",
        "lib/cmake/shardalloc/shardalloc-config-version.cmake",
    ] {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    let link = |name: &str| fs::read_link(lib.join(name)).unwrap_or_default();
    assert_eq!(
        link(&format!("libshardalloc.so.{major}")),
        Path::new(&format!("libshardalloc.so.{version}"))
    );
    assert_eq!(
        link("libshardalloc.so"),
        Path::new(&format!("libshardalloc.so.{major}"))
    );
    installed_shared_library();
}

#[test]
fn pkg_config_build() {
    if !have("pkg-config") {
        return;
    }
    let prefix = prefix();
    let dir = work_dir().join("pkg-config");
    fs::create_dir_all(&dir).unwrap();
    let flags = run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "shardalloc"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
    let flags = flags.stdout;
    let exe = dir.join("prog");
    run(
        Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
            .arg(program())
            .arg("-o")
            .arg(&exe)
            .args(flags.split_whitespace())
            // The installed directory is no system one: tell the loader where it is.
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display())),
    );
    check_program(&exe, true);
}

#[test]
fn cmake_build() {
    if !have("cmake") {
        return;
    }
    let prefix = prefix();
    let build = work_dir().join("cmake");
    let _ = fs::remove_dir_all(&build);
    run(Command::new("cmake")
        .arg("-S")
        .arg(root().join("tests/programs/installed"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    run(Command::new("cmake").arg("--build").arg(&build));
    check_program(&build.join("prog_shared"), true);
    check_program(&build.join("prog_static"), false);
}
