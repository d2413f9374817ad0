//! shardalloc as a drop-in replacement: real programs run once plainly and once with
//! `LD_PRELOAD=<abs>/libshardalloc.so`, and must print the same.
//!
//! The programs: Debian's `/usr/bin/python3` (an allocation-heavy script), `sqlite3` (a few
//! hundred thousand inserts, updates, index builds and queries in memory) and `gcc` (a
//! generated C file of a few thousand lines, compiled and linked; the two executables must be
//! byte-identical), plus programs of ours in `tests/programs/`: a multi-threaded C program
//! with cross-thread frees, a C++ program using every form of `new`/`delete`, and a C program
//! that allocates in the awkward places (before `main`, at thread exit after the allocator's
//! teardown, in `fork` children of a multi-threaded parent, in a `dlopen`ed library, at
//! process exit). Each test also checks that shardalloc really served the process: the
//! `SHARDALLOC_VERBOSE=1` line it prints on its first allocation, and where the program can
//! tell, that its blocks lie in shardalloc's memory (`/proc/self/maps`,
//! `mi_is_in_heap_region`) or that the exit statistics show the workload's memory.
//!
//! The library is built by `make -C c_src shared` into a folder under Cargo's target
//! directory, with `SA_DEBUG=1` (assertions, misuse checks) in the debug profile, as the C
//! tests are. A missing Debian program fails its test with the package to install; `.ci/run`
//! installs them.

// rust-version (Cargo.toml) is the library's; tests and benches may use newer std APIs.
#![allow(clippy::incompatible_msrv)]

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::{make_c_src, root};

/// This profile's folder for the library and the programs built from `tests/programs`.
fn work_dir() -> PathBuf {
    common::work_dir("preload")
}

/// A program that runs longer than this is killed and its test fails.
const TIMEOUT: Duration = Duration::from_secs(120);

fn programs() -> PathBuf {
    root().join("tests/programs")
}

/// The line shardalloc prints on stderr at its first allocation under `SHARDALLOC_VERBOSE=1`.
fn verbose_line(debug: bool) -> String {
    format!(
        "shardalloc: shardalloc {} ({} build) initialised",
        env!("CARGO_PKG_VERSION"),
        if debug { "debug" } else { "release" }
    )
}

// ---- Building --------------------------------------------------------------------------------

/// `make -C c_src shared` into `dir`; a lock file serialises concurrent test processes
/// (`cargo nextest`), and make finds the later builds up to date.
fn make_shared(dir: &Path, sa_debug: bool) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let lock_path = dir.join(".build.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    let mut make = make_c_src("shared", dir);
    make.arg(format!("SA_DEBUG={}", u8::from(sa_debug)));
    let out = make
        .output()
        .unwrap_or_else(|e| panic!("cannot run make: {e} (install make)"));
    assert!(
        out.status.success(),
        "building libshardalloc.so failed ({}): {make:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = dir.join("libshardalloc.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// The library the tests preload, in this profile's configuration (absolute path).
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| make_shared(&work_dir().join("lib"), cfg!(debug_assertions)))
}

/// A library with `SA_DEBUG=1`, whatever the profile: it aborts on every misuse it sees.
fn debug_library() -> &'static Path {
    if cfg!(debug_assertions) {
        return library();
    }
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| make_shared(&work_dir().join("lib-debug"), true))
}

/// A release library (`SA_DEBUG=0`), whatever the profile: it ignores foreign pointers.
fn release_library() -> &'static Path {
    if !cfg!(debug_assertions) {
        return library();
    }
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| make_shared(&work_dir().join("lib-release"), false))
}

/// Compiles `tests/programs/<source>` (C, or C++ for `.cpp`) into `<work dir>/<output>`;
/// `extra` goes at the end of the command line.
fn compile(source: &str, output: &str, extra: &[&str]) -> PathBuf {
    let cxx = source.ends_with(".cpp");
    let (var, default, package) = if cxx {
        ("CXX", "c++", "g++")
    } else {
        ("CC", "cc", "gcc")
    };
    let compiler = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let out = work_dir().join(output);
    // Built under a name of this process, then renamed: concurrent test processes never see
    // a half-written file.
    let partial = work_dir().join(format!("{output}.{}.partial", std::process::id()));
    let mut cmd = Command::new(&compiler);
    if cxx {
        cmd.arg("-std=c++17");
    }
    cmd.args(["-O2", "-g", "-Wall", "-Wextra", "-pthread", "-I"])
        .arg(programs())
        .arg(programs().join(source))
        .arg("-o")
        .arg(&partial)
        .args(extra)
        .arg("-ldl");
    let result = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {compiler}: {e} (install the Debian package `{package}`)")
    });
    assert!(
        result.status.success(),
        "compiling {source} failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    fs::rename(&partial, &out)
        .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", out.display()));
    out
}

/// A Debian program the test needs, or a failure that says which package to install.
fn require(program: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(program);
    assert!(
        path.is_file(),
        "{program} is missing: install the Debian package `{package}` \
         (apt-get install {package}; .ci/run does)"
    );
    path
}

// ---- Running ---------------------------------------------------------------------------------

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    what: String,
}

impl Run {
    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// How often the verbose line appears: once per process that allocated.
    fn verbose_lines(&self, debug: bool) -> usize {
        let line = verbose_line(debug);
        self.stderr.lines().filter(|l| *l == line).count()
    }
}

/// A program with a clean environment (no inherited `LD_PRELOAD` or `SHARDALLOC_*`), with
/// `preload` in `LD_PRELOAD` when given.
struct Launch {
    cmd: Command,
    stdin: Option<PathBuf>,
    what: String,
}

fn launch(program: &Path, args: &[&str], preload: Option<&Path>) -> Launch {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir(work_dir());
    if let Some(lib) = preload {
        assert!(lib.is_absolute());
        cmd.env("LD_PRELOAD", lib).env("SHARDALLOC_VERBOSE", "1");
    }
    let what = format!(
        "{}`{} {}`",
        if preload.is_some() {
            "LD_PRELOAD=libshardalloc.so "
        } else {
            ""
        },
        program.display(),
        args.join(" ")
    );
    Launch {
        cmd,
        stdin: None,
        what,
    }
}

impl Launch {
    fn stdin(mut self, path: &Path) -> Self {
        self.stdin = Some(path.to_owned());
        self
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    fn dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs to the end (or kills it after `TIMEOUT`); stdout and stderr go through files, so
    /// a chatty program cannot block on a full pipe.
    fn run(mut self) -> Run {
        let dir = work_dir();
        let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id())
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let out_path = dir.join(format!("run-{tag}.out"));
        let err_path = dir.join(format!("run-{tag}.err"));
        let stdin = match &self.stdin {
            Some(path) => Stdio::from(
                File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())),
            ),
            None => Stdio::null(),
        };
        let mut child = self
            .cmd
            .stdin(stdin)
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.what));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not finish in {} s", self.what, TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let read = |path: &Path| {
            let mut bytes = Vec::new();
            File::open(path).unwrap().read_to_end(&mut bytes).unwrap();
            let _ = fs::remove_file(path);
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Run {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
            what: self.what,
        }
    }
}

/// Runs the same command plainly and on shardalloc; both must succeed with the same stdout,
/// and the preloaded one must have printed the verbose line (at least `processes` times).
/// Returns both runs for further checks.
fn compare(make: impl Fn(Option<&Path>) -> Launch, processes: usize) -> (Run, Run) {
    let plain = make(None).run();
    let preloaded = make(Some(library())).run();
    plain.assert_success();
    preloaded.assert_success();
    assert_eq!(
        plain.stdout, preloaded.stdout,
        "{} printed something else than the plain run\n--- stderr ---\n{}",
        preloaded.what, preloaded.stderr
    );
    let debug = cfg!(debug_assertions);
    assert_eq!(plain.verbose_lines(debug), 0, "{}", plain.stderr);
    let seen = preloaded.verbose_lines(debug);
    assert!(
        seen >= processes,
        "{}: expected `{}` at least {processes} times on stderr, saw it {seen} times:\n{}",
        preloaded.what,
        verbose_line(debug),
        preloaded.stderr
    );
    (plain, preloaded)
}

/// The peak of a byte counter in the `SHARDALLOC_SHOW_STATS=1` summary, in MiB
/// (`  committed   12.3 MiB   peak   45.6 MiB`), or of a count (`  threads   0   peak   9`).
fn stats_peak(stderr: &str, label: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no `{label}` line in the statistics:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "peak")
        .unwrap_or_else(|| panic!("no peak in `{line}`"));
    words[at + 1]
        .parse()
        .unwrap_or_else(|e| panic!("cannot read the peak in `{line}`: {e}"))
}

// ---- Debian's programs -----------------------------------------------------------------------

#[test]
fn python3_allocation_heavy_script() {
    // Debian's interpreter, not a pyenv shim in PATH.
    let python = require("/usr/bin/python3", "python3");
    let script = programs().join("heavy.py");
    let script = script.to_str().unwrap().to_owned();
    let (plain, preloaded) = compare(
        |lib| {
            launch(&python, &["-s", &script], lib)
                // every object from malloc, not from Python's small-object arenas
                .env("PYTHONMALLOC", "malloc")
                .env("PYTHONHASHSEED", "0")
                .env("PYTHONDONTWRITEBYTECODE", "1")
        },
        1,
    );
    assert!(plain.stderr.contains("maps: libshardalloc.so not mapped"));
    assert!(
        preloaded.stderr.contains("maps: libshardalloc.so mapped"),
        "{}",
        preloaded.stderr
    );
    assert!(
        preloaded
            .stderr
            .contains("heap: 2000 of 2000 objects in shardalloc"),
        "Python objects outside shardalloc's memory:\n{}",
        preloaded.stderr
    );
}

#[test]
fn sqlite3_inserts_updates_indexes_queries() {
    let sqlite = require("/usr/bin/sqlite3", "sqlite3");
    let sql = programs().join("workload.sql");
    let (_, preloaded) = compare(
        |lib| {
            let l = launch(&sqlite, &["-batch", ":memory:"], lib).stdin(&sql);
            match lib {
                Some(_) => l.env("SHARDALLOC_SHOW_STATS", "1"),
                None => l,
            }
        },
        1,
    );
    // The in-memory database (tens of MiB) lived in shardalloc's memory.
    let committed = stats_peak(&preloaded.stderr, "committed");
    assert!(
        committed >= 32.0,
        "sqlite3 peaked at {committed} MiB committed by shardalloc; its database alone is \
         larger:\n{}",
        preloaded.stderr
    );
}

/// A C file of about 3000 lines: structs, switches, loops, string tables and a `main` that
/// prints a checksum of all of it.
fn generated_c_source(functions: usize) -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "/* generated by tests/preload.rs */\n#include <stdio.h>\n#include <string.h>\n\n",
    );
    for f in 0..functions {
        let n = f % 7 + 2;
        writeln!(
            s,
            "struct s{f} {{\n  int a[{n}];\n  double d;\n  const char *name;\n}};\n\
             static const char *const names{f}[] = {{\"{f}-a\", \"{f}-bb\", \"{f}-ccc\"}};\n\
             static unsigned long fn{f}(unsigned long x) {{\n  struct s{f} v;\n  \
             memset(&v, 0, sizeof v);\n  v.name = names{f}[x % 3];\n  \
             for (int i = 0; i < {n}; i++)\n    v.a[i] = (int)(x >> i) ^ {f};\n  \
             switch (x % 8) {{"
        )
        .unwrap();
        for c in 0..8 {
            writeln!(
                s,
                "  case {c}:\n    x = x * {}u + {}u;\n    break;",
                2 * c + 3,
                f * c + 1
            )
            .unwrap();
        }
        writeln!(
            s,
            "  }}\n  v.d = (double)x / {}.0;\n  \
             return x + (unsigned long)v.d + (unsigned long)v.a[{}] + strlen(v.name);\n}}\n",
            f + 1,
            n - 1
        )
        .unwrap();
    }
    s.push_str("int main(void) {\n  unsigned long x = 1;\n");
    for f in 0..functions {
        writeln!(s, "  x = fn{f}(x);").unwrap();
    }
    s.push_str("  printf(\"checksum %lu\\n\", x);\n  return 0;\n}\n");
    s
}

#[test]
fn gcc_compiles_a_generated_file() {
    let gcc = require("/usr/bin/gcc", "gcc");
    let dir = work_dir().join("gcc");
    fs::create_dir_all(&dir).unwrap();
    let source = generated_c_source(100);
    assert!(source.lines().count() > 2500);
    fs::write(dir.join("generated.c"), source).unwrap();
    // the driver, cc1, as, collect2 and ld all run on shardalloc
    compare(
        |lib| {
            let out = if lib.is_some() { "preloaded" } else { "plain" };
            launch(&gcc, &["-O2", "generated.c", "-o", out], lib).dir(&dir)
        },
        3,
    );
    let plain = fs::read(dir.join("plain")).unwrap();
    let preloaded = fs::read(dir.join("preloaded")).unwrap();
    assert!(
        plain == preloaded,
        "gcc on shardalloc produced a different executable"
    );
    let run = launch(&dir.join("preloaded"), &[], None).run();
    run.assert_success();
    assert!(run.stdout.starts_with("checksum "), "{}", run.stdout);
}

// ---- Programs of ours ------------------------------------------------------------------------

#[test]
fn threads_with_cross_thread_frees() {
    let program = compile("mt_crossfree.c", "mt_crossfree", &[]);
    let (plain, preloaded) = compare(|lib| launch(&program, &[], lib), 1);
    assert!(plain
        .stderr
        .contains("served: worker blocks: no shardalloc"));
    assert!(
        preloaded
            .stderr
            .contains("served: worker blocks: 240 of 240 blocks in shardalloc"),
        "{}",
        preloaded.stderr
    );
}

#[test]
fn cxx_new_and_delete() {
    require("/usr/bin/g++", "g++");
    let program = compile("cxx_newdelete.cpp", "cxx_newdelete", &[]);
    let (_, preloaded) = compare(|lib| launch(&program, &[], lib), 1);
    assert!(
        preloaded
            .stderr
            .contains("served: new/delete blocks: 18 of 18 blocks in shardalloc"),
        "{}",
        preloaded.stderr
    );
}

#[test]
fn constructors_thread_exit_fork_dlopen_and_exit() {
    let library = compile("lifecycle_lib.c", "lifecycle_lib.so", &["-shared", "-fPIC"]);
    let program = compile("lifecycle.c", "lifecycle", &[]);
    let lib_path = library.to_str().unwrap().to_owned();
    let (_, preloaded) = compare(|lib| launch(&program, &[&lib_path], lib), 1);
    assert!(
        preloaded
            .stderr
            .contains("served: lifecycle blocks: 76 of 76 blocks in shardalloc"),
        "{}",
        preloaded.stderr
    );
}

// ---- Environment options ---------------------------------------------------------------------

#[test]
fn show_stats_prints_a_summary_at_exit() {
    let program = compile("mt_crossfree.c", "mt_crossfree_stats", &[]);
    let run = launch(&program, &[], Some(library()))
        .env("SHARDALLOC_SHOW_STATS", "1")
        .run();
    run.assert_success();
    assert!(
        run.stderr.contains("shardalloc statistics (process):"),
        "no statistics at exit:\n{}",
        run.stderr
    );
    // eight workers and main at once
    let threads = stats_peak(&run.stderr, "threads");
    assert!(threads >= 9.0, "peak threads {threads}:\n{}", run.stderr);

    let quiet = launch(&program, &[], Some(library())).run();
    quiet.assert_success();
    assert!(
        !quiet.stderr.contains("statistics"),
        "statistics without SHARDALLOC_SHOW_STATS:\n{}",
        quiet.stderr
    );
}

#[test]
fn show_errors_reports_what_it_detects() {
    // An option value shardalloc cannot read is an error it reports only when asked to (in
    // release builds; debug builds show errors by default).
    let program = compile("misuse.c", "misuse", &[]);
    let message = "shardalloc: error: SHARDALLOC_PURGE_DELAY: cannot read the value \"soon\"";
    let shown = launch(&program, &["none"], Some(library()))
        .env("SHARDALLOC_PURGE_DELAY", "soon")
        .env("SHARDALLOC_SHOW_ERRORS", "1")
        .run();
    shown.assert_success();
    assert!(shown.stderr.contains(message), "{}", shown.stderr);
    let hidden = launch(&program, &["none"], Some(library()))
        .env("SHARDALLOC_PURGE_DELAY", "soon")
        .env("SHARDALLOC_SHOW_ERRORS", "0")
        .env("SHARDALLOC_VERBOSE", "0") // verbose shows errors too
        .run();
    hidden.assert_success();
    assert!(!hidden.stderr.contains("error"), "{}", hidden.stderr);
    // A release build ignores a pointer malloc never returned, and says so when asked.
    let bad_free = launch(&program, &["bad-free"], Some(release_library()))
        .env("SHARDALLOC_SHOW_ERRORS", "1")
        .run();
    bad_free.assert_success();
    assert!(
        bad_free.stderr.contains("shardalloc: error: free(0x")
            && bad_free
                .stderr
                .contains("invalid pointer: not allocated by shardalloc; ignored"),
        "{}",
        bad_free.stderr
    );
}

#[test]
fn debug_build_stops_double_and_invalid_frees() {
    let program = compile("misuse.c", "misuse_debug", &[]);
    for (misuse, message) in [
        ("double-free", "): double free"),
        ("bad-free", "): invalid pointer"),
    ] {
        let run = launch(&program, &[misuse], Some(debug_library()))
            .env("SHARDALLOC_SHOW_ERRORS", "1")
            .run();
        assert!(
            !run.status.success() && run.stderr.contains(message),
            "{misuse}: expected `{message}` and an abort, got {}:\n{}{}",
            run.status,
            run.stdout,
            run.stderr
        );
    }
}
