"""Shared by bench/run_c_bench.py, bench/callgrind_fastpath.py and bench/memory/run.py: the
allocator list and the options that pick from it, building the C programs, and a description of
the machine (and commit) for the result files.

Standard library only.
"""

import datetime
import mmap
import os
import platform
import re
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
BUILD_DIR = os.path.join(BENCH_DIR, "build")
RESULTS_DIR = os.path.join(BENCH_DIR, "results")



def _multiarch_libdir():
    try:
        triple = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        triple = ""
    return "/usr/lib/" + (triple or "x86_64-linux-gnu")


LIBDIR = _multiarch_libdir()

# name, shared library to LD_PRELOAD (None: the system allocator), Debian package (for the
# version and the install hint), how to get it when missing.
ALLOCATORS = [
    ("glibc", None, "libc6", None),
    ("jemalloc", LIBDIR + "/libjemalloc.so.2", "libjemalloc2", "apt-get install libjemalloc2"),
    ("mimalloc", LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0",
     "apt-get install libmimalloc2.0"),
    ("tcmalloc", LIBDIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4",
     "apt-get install libtcmalloc-minimal4"),
    ("shardalloc", os.path.join(REPO_ROOT, "c_src", "build", "libshardalloc.so"), None,
     "build it: make -C c_src (c_src/build/libshardalloc.so)"),
]


def package_version(pkg):
    if pkg is None:
        return None
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip() or None
    except OSError:
        return None


def select_allocators(names=None, extra=()):
    """Returns (available, notes). available: list of dicts {name, path, version}; notes: one line
    per allocator that was skipped. `names` selects among the known allocators; `extra` holds
    "NAME=PATH" strings for more libraries (a mimalloc built from source, say), always added;
    a known NAME (shardalloc from another build directory, say) replaces that entry's path."""
    entries = list(ALLOCATORS)
    if names:
        wanted = set(names)
        unknown = wanted - {e[0] for e in entries}
        if unknown:
            sys.exit("unknown allocator(s): %s" % ", ".join(sorted(unknown)))
        entries = [e for e in entries if e[0] in wanted]
    for spec in extra:  # always run, whatever `names` says
        if "=" not in spec:
            sys.exit("--lib wants NAME=PATH, got %r" % spec)
        name, path = spec.split("=", 1)
        # The package no longer describes a replaced library; shardalloc's version comes
        # from the header either way.
        entries = [e for e in entries if e[0] != name]
        entries.append((name, os.path.abspath(path), None, "check the path given to --lib"))
    available, notes = [], []
    for name, path, pkg, hint in entries:
        if path is not None and not os.path.exists(path):
            notes.append("%s: %s is missing, skipped (%s)" % (name, path, hint))
            continue
        version = package_version(pkg)
        if name == "shardalloc":
            version = shardalloc_version()
        elif version is None and path is not None:
            version = library_mi_version(path)
        available.append({"name": name, "path": path, "version": version})
    return available, notes


def selected_or_exit(allocs, notes):
    """Prints select_allocators' notes and passes its result on; exits when no allocator is
    left."""
    for note in notes:
        print("note: " + note)
    if not allocs:
        sys.exit("no allocator to run")
    return allocs, notes


def version_from_mi(v):
    """mi_version()'s number as text: 30302 -> "3.3.2" (mimalloc 3 counts 10000 a major
    version); None for older numbering (212), which says less than the package does."""
    v = int(v)
    return "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100) if v >= 10000 else None


def library_mi_version(path):
    """The version a library without a package reports through mi_version() (a mimalloc
    built from source, say), asked by a short process it is preloaded into; None if it has no
    such function or an older numbering."""
    probe = "import ctypes\ntry:\n print(ctypes.CDLL(None).mi_version())\nexcept Exception:\n pass"
    try:
        out = subprocess.run([sys.executable, "-c", probe], env=preload_env(path),
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return version_from_mi(out) if out.isdigit() else None


def shardalloc_version():
    header = os.path.join(REPO_ROOT, "c_src", "include", "shardalloc.h")
    try:
        text = open(header).read()
    except OSError:
        return None
    parts = [re.search(r"#define SHARDALLOC_VERSION_%s (\d+)" % p, text) for p in
             ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        return None
    return ".".join(m.group(1) for m in parts)


def preload_env(path):
    """The environment for a run under the allocator at `path` (None: no preload)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if path is not None:
        env["LD_PRELOAD"] = path
    return env


def alloc_env(alloc):
    """The environment for a run under `alloc`: its preload and its variables, if it is a
    variant (add_variants)."""
    env = preload_env(alloc["path"])
    env.update(alloc.get("env", {}))
    return env


def add_variants(allocs, specs):
    """Adds to `allocs`, right after its base, each variant "NAME=BASE,VAR=VALUE[,...]": the
    allocator BASE run with those environment variables (shardalloc with an option set, say)."""
    for spec in specs:
        name, _, rest = spec.partition("=")
        base_name, *assignments = rest.split(",")
        base = [a for a in allocs if a["name"] == base_name]
        if not name or not base or not all("=" in a for a in assignments):
            sys.exit("--variant wants NAME=BASE,VAR=VALUE,... with BASE among the allocators "
                     "run, got %r" % spec)
        env = dict(a.split("=", 1) for a in assignments)
        allocs.insert(allocs.index(base[0]) + 1, dict(base[0], name=name, env=env))
    return allocs


PAGE_REPORTING_ORDER = "/sys/module/page_reporting/parameters/page_reporting_order"
PRIME_MIB = 512  # what prime_host_memory touches: more than any benchmark run here faults


def free_page_reporting():
    """The order of the free blocks the guest kernel hands back to its host (virtio-balloon
    free page reporting), or None where the machine does not report free memory."""
    try:
        with open(PAGE_REPORTING_ORDER) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def prime_host_memory(mib=PRIME_MIB):
    """Touch `mib` MiB advised for huge pages, then free it. On a virtual machine with free
    page reporting, free 2 MiB blocks go back to the host a few seconds after they are freed,
    and the next huge page fault on one waits for the host to provide each of its 4 KiB pages
    again (about 14 ms a fault here, against 0.1-0.2 ms). A run that follows a pause would pay
    that in every huge page it faults and one that follows another run would not; running this
    first gives every run the memory just freed, still backed by the host. Does nothing where
    the machine does not report free memory."""
    if free_page_reporting() is None:
        return
    size = mib << 20
    with mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) as m:
        if hasattr(m, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            m.madvise(mmap.MADV_HUGEPAGE)
        for i in range(0, size, mmap.PAGESIZE):
            m[i] = 1


def build_programs():
    """Builds bench/c into bench/build; exits when the build fails."""
    proc = subprocess.run(["make", "-s", "-C", os.path.join(BENCH_DIR, "c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit("building bench/c failed")


def machine_info():
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": None,
        "glibc": platform.libc_ver()[1] or None,
        "commit": git_commit(),
        "free_page_reporting_order": free_page_reporting(),
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            info["cpu"] = m.group(1).strip()
    except OSError:
        pass
    return info


def git_commit():
    """The checkout's commit, with "+changes" when the C sources differ from it (what a
    library built from this working tree was built from), or None outside git."""
    def git(*argv):
        return subprocess.run(["git", "-C", REPO_ROOT] + list(argv), capture_output=True,
                              text=True)
    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--", "c_src", "build.rs", "src").stdout.strip()
    except OSError:
        return None
    return head.stdout.strip() + ("+changes" if dirty else "")


def machine_line(info):
    return "%s, nproc %s, Linux %s, glibc %s, commit %s, %s" % (
        info["cpu"], info["nproc"], info["kernel"], info["glibc"], info.get("commit") or "?",
        info["date"])


def versions_line(allocs):
    def described(a):
        env = " ".join("%s=%s" % kv for kv in a.get("env", {}).items())
        return "%s %s%s" % (a["name"], a["version"] or "?", " with " + env if env else "")
    return ", ".join(described(a) for a in allocs)


def add_common_args(ap, results_name):
    """The options every benchmark script shares: which allocators, extra libraries, where
    the results go (bench/results/RESULTS_NAME.{json,md} by default)."""
    ap.add_argument("--alloc", help="comma-separated allocator names (default: all found)")
    ap.add_argument("--lib", action="append", default=[], metavar="NAME=PATH",
                    help="another allocator library to preload (repeatable); a known NAME "
                         "(e.g. shardalloc) takes PATH instead of its default library")
    ap.add_argument("--out-prefix", default=os.path.join(RESULTS_DIR, results_name),
                    help=f"write PREFIX.json and PREFIX.md (default bench/results/{results_name})")
