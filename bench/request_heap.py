#!/usr/bin/env python3
"""A heap per request, for two commits side by side: the working tree and a base commit.

1. Instructions (deterministic): bench/c/heap_request.c under callgrind with each build's
   libshardalloc.so preloaded, a request of N objects in a heap of its own (`heap`) or with
   malloc and one free per object (`global`); per request = (total(2R) - total(R)) / R, which
   cancels start-up and the warm-up request.
2. CPU time of the same program (user + system, least of interleaved runs): less moved by a
   loaded machine than wall time.
3. CPU time of the criterion group's request itself in Rust (examples/request_probe.rs, copied
   into the base's tree when it lacks it): in a `Heap`, on the global shardalloc, in bumpalo.
4. Time: the criterion groups request_heap and heap_destroy (benches/allocators.rs), each
   build its own bench binary, run in alternation (base, tree, base, tree, ...) so that a
   change in the machine's load hits both; a time is the least of its runs' medians. On a
   loaded machine these move by tens of percent; the instruction counts do not.

    python3 bench/request_heap.py --base eb64f1c [--rounds 2] [--quick] [--no-criterion]
        -> bench/results/request_heap.{md,json}

The base is exported with `git archive` into a temporary directory and built there (same
CARGO_TARGET_DIR, so dependencies are shared). Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
FILTER = "request_heap|heap_destroy"
VARIANTS = ["heap", "shardalloc", "mimalloc", "bumpalo"]


def git(*args, cwd=REPO_ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def cargo_build_copy(src_dir, subdirs, cargo_args, target, keep_as):
    """Runs `cargo <cargo_args> --message-format=json` in src_dir and copies the executable of
    `target` to keep_as; returns keep_as.

    Both builds share CARGO_TARGET_DIR and have the same package, so they write the same
    executable, and cargo judges freshness by modification times: every source file under
    `subdirs` is touched first so that each build is made from its own sources, and its
    executable is copied away before the next one."""
    for sub in subdirs + ("build.rs", "Cargo.toml"):
        path = os.path.join(src_dir, sub)
        if os.path.isfile(path):
            os.utime(path)
        for root, _, files in os.walk(path):
            for f in files:
                os.utime(os.path.join(root, f))
    out = subprocess.run(["cargo"] + cargo_args + ["--message-format=json"], cwd=src_dir,
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and \
                msg["target"]["name"] == target:
            shutil.copy2(msg["executable"], keep_as)
            return keep_as
    sys.exit("no %s executable in cargo's output for %s" % (target, src_dir))


def build(src_dir, keep_as):
    """Builds the allocators bench in src_dir; returns a copy of its executable at keep_as."""
    return cargo_build_copy(src_dir, ("src", "c_src", "benches"),
                            ["bench", "--bench", "allocators", "--no-run"], "allocators", keep_as)


def build_probe(src_dir, keep_as):
    """Builds examples/request_probe.rs against src_dir's library (the same file in both
    builds: it is the measuring tool, not what is compared); returns a copy of it at keep_as."""
    dst = os.path.join(src_dir, "examples", "request_probe.rs")
    if not os.path.exists(dst):
        shutil.copy2(os.path.join(REPO_ROOT, "examples", "request_probe.rs"), dst)
    return cargo_build_copy(src_dir, ("src", "c_src", "examples"),
                            ["build", "--release", "--example", "request_probe"],
                            "request_probe", keep_as)


RUST_MODES = ("heap", "global", "bump")


def rust_cpu_per_request(probes, n, repeats):
    """{(build, mode): ns per request} of request_probe, as cpu_per_request."""
    r = max(5, 1000000 // n)
    least = {}
    for _ in range(repeats):
        for b in probes:
            for mode in RUST_MODES:
                for k in (r, 2 * r):
                    argv = [probes[b], mode, str(n), str(k)]
                    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    if status != 0:
                        sys.exit("request_probe failed: %r" % argv)
                    t = usage.ru_utime + usage.ru_stime
                    key = (b, mode, k)
                    least[key] = min(least.get(key, t), t)
    return {(b, m): (least[(b, m, 2 * r)] - least[(b, m, r)]) / r * 1e9
            for b in probes for m in RUST_MODES}


def run(exe, home, quick):
    env = dict(os.environ, CRITERION_HOME=home)
    if quick:
        env["SHARDALLOC_BENCH_QUICK"] = "1"
    subprocess.run([exe, "--bench", FILTER], check=True, env=env, stdout=subprocess.DEVNULL)


def callgrind_total(lib, mode, n, r):
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            os.path.join(BENCH_DIR, "build", "heap_request"), mode, str(n), str(r)]
    env = dict(os.environ, LD_PRELOAD=lib)
    err = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stderr
    for line in err.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1].strip())
    sys.exit("no instruction total from callgrind: " + err[-500:])


def per_request(lib, mode, n):
    r = max(2, 20000 // n)
    return (callgrind_total(lib, mode, n, 2 * r) - callgrind_total(lib, mode, n, r)) / r


def cpu_seconds(lib, mode, n, r):
    """CPU time (user + system) of one run: unlike wall time, it leaves out the time the
    process waits for a core on a loaded machine."""
    argv = [os.path.join(BENCH_DIR, "build", "heap_request"), mode, str(n), str(r)]
    proc = subprocess.Popen(argv, env=dict(os.environ, LD_PRELOAD=lib),
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit("heap_request failed: %r" % argv)
    return usage.ru_utime + usage.ru_stime


def cpu_per_request(libs, n, repeats):
    """{(build, mode): ns per request}: (least of 2R runs - least of R runs) / R, the runs of
    all builds and modes interleaved."""
    r = max(20, 2000000 // n)
    least = {}
    for _ in range(repeats):
        for b in libs:
            for mode in ("heap", "global"):
                for k in (r, 2 * r):
                    t = cpu_seconds(libs[b], mode, n, k)
                    key = (b, mode, k)
                    least[key] = min(least.get(key, t), t)
    return {(b, m): (least[(b, m, 2 * r)] - least[(b, m, r)]) / r * 1e9
            for b in libs for m in ("heap", "global")}


def medians(home):
    """{(group, variant, param): median ns} from a criterion directory."""
    res = {}
    for group in ("request_heap", "heap_destroy"):
        gdir = os.path.join(home, group)
        if not os.path.isdir(gdir):
            continue
        for variant in os.listdir(gdir):
            vdir = os.path.join(gdir, variant)
            if not os.path.isdir(vdir) or variant == "report":
                continue
            for param in os.listdir(vdir):
                est = os.path.join(vdir, param, "new", "estimates.json")
                if os.path.exists(est):
                    with open(est) as f:
                        res[(group, variant, param)] = json.load(f)["median"]["point_estimate"]
    return res


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return "%.2f %s" % (ns / scale, unit)
    return "%.0f ns" % ns


def param_key(p):
    return (0, int(p)) if p.isdigit() else (1, p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the commit to compare against")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="SHARDALLOC_BENCH_QUICK=1")
    ap.add_argument("--no-criterion", action="store_true", help="no criterion run")
    ap.add_argument("--cpu-repeats", type=int, default=7, help="runs of each CPU-time case")
    ap.add_argument("--out-prefix", default=os.path.join(BENCH_DIR, "results", "request_heap"))
    args = ap.parse_args()

    base = git("rev-parse", "--short", args.base)
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                ":(exclude)bench/results") != ""
    work = tempfile.mkdtemp(prefix="request_heap.")
    src = os.path.join(work, "base")
    os.makedirs(src)
    subprocess.run("git archive %s | tar -x -C %s" % (base, src), shell=True, cwd=REPO_ROOT,
                   check=True)
    libs = {}
    for name, d in (("base", src), ("tree", REPO_ROOT)):
        subprocess.run(["make", "-s", "-C", os.path.join(d, "c_src"), "shared"], check=True)
        libs[name] = os.path.join(d, "c_src", "build", "libshardalloc.so")
    subprocess.run(["make", "-s", "-C", os.path.join(BENCH_DIR, "c")], check=True)
    instr = []
    for n in (100, 1000, 10000):
        row = {"n": n}
        for b in ("base", "tree"):
            for mode in ("heap", "global"):
                row["%s_%s" % (b, mode)] = per_request(libs[b], mode, n)
        instr.append(row)
    cpu_rows = []
    for n in (100, 1000, 10000):
        t = cpu_per_request(libs, n, args.cpu_repeats)
        cpu_rows.append({"n": n, **{"%s_%s_ns" % k: v for k, v in t.items()}})
    probes = {"base": build_probe(src, os.path.join(work, "probe-base")),
              "tree": build_probe(REPO_ROOT, os.path.join(work, "probe-tree"))}
    rust_rows = []
    for n in (1000, 10000, 100000):
        t = rust_cpu_per_request(probes, n, args.cpu_repeats)
        rust_rows.append({"n": n, **{"%s_%s_ns" % k: v for k, v in t.items()}})
    exes = {} if args.no_criterion else {
        "base": build(src, os.path.join(work, "allocators-base")),
        "tree": build(REPO_ROOT, os.path.join(work, "allocators-tree"))}
    if exes and open(exes["base"], "rb").read() == open(exes["tree"], "rb").read():
        sys.exit("the two bench executables are identical: the builds did not separate")
    best = {"base": {}, "tree": {}}
    for r in range(0 if args.no_criterion else args.rounds):
        for build_name in ("base", "tree"):
            home = os.path.join(work, "criterion-%s-%d" % (build_name, r))
            print("round %d: %s" % (r + 1, build_name), file=sys.stderr)
            run(exes[build_name], home, args.quick)
            for key, ns in medians(home).items():
                old = best[build_name].get(key)
                best[build_name][key] = ns if old is None else min(old, ns)

    rows = []
    keys = sorted({k for b in best.values() for k in b},
                  key=lambda k: (k[0] != "request_heap", param_key(k[2]), VARIANTS.index(k[1])
                                 if k[1] in VARIANTS else 9))
    params = []
    for g, _, p in keys:
        if (g, p) not in params:
            params.append((g, p))
    for g, p in params:
        row = {"group": g, "param": p}
        for b in ("base", "tree"):
            for v in VARIANTS:
                ns = best[b].get((g, v, p))
                if ns is not None:
                    row["%s_%s_ns" % (b, v)] = ns
        rows.append(row)

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cmd = "python3 bench/request_heap.py --base %s --rounds %d%s%s" % (
        args.base, args.rounds, " --quick" if args.quick else "",
        " --no-criterion" if args.no_criterion else "")
    lines = [
        "# A heap per request: before and after",
        "",
        "`%s` on %s, %s (%d cores); base %s, tree %s%s. Each build ran %d times in "
        "alternation; a time is the least of its runs' medians (criterion)." % (
            cmd, when, cpu, os.cpu_count() or 0, base, head, " (with uncommitted changes)"
            if dirty else "", args.rounds),
        "",
        "## Instructions per request (callgrind, bench/c/heap_request.c)",
        "",
        "`global/heap`: a request with malloc and free over the same request in a heap of its "
        "own (above 1: the heap executes fewer instructions).",
        "",
        "| objects | heap base | heap tree | tree/base | global base | global tree | "
        "global/heap base | global/heap tree |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in instr:
        lines.append("| %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f | %.2f |" % (
            row["n"], row["base_heap"], row["tree_heap"], row["tree_heap"] / row["base_heap"],
            row["base_global"], row["tree_global"], row["base_global"] / row["base_heap"],
            row["tree_global"] / row["tree_heap"]))
    lines += [
        "",
        "## CPU time per request (bench/c/heap_request.c)",
        "",
        "User + system time of the process (not wall time: waiting for a core does not count), "
        "least of %d interleaved runs of R and 2R requests, (2R - R) / R." % args.cpu_repeats,
        "",
        "| objects | heap base | heap tree | tree/base | global base | global tree | "
        "global/heap base | global/heap tree |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in cpu_rows:
        lines.append("| %d | %s | %s | %.2f | %s | %s | %.2f | %.2f |" % (
            row["n"], fmt_time(row["base_heap_ns"]), fmt_time(row["tree_heap_ns"]),
            row["tree_heap_ns"] / row["base_heap_ns"], fmt_time(row["base_global_ns"]),
            fmt_time(row["tree_global_ns"]), row["base_global_ns"] / row["base_heap_ns"],
            row["tree_global_ns"] / row["tree_heap_ns"]))
    lines += [
        "",
        "## CPU time per request, Rust (examples/request_probe.rs)",
        "",
        "The criterion group's request (strings grown piece by piece, vectors in a hash map) "
        "as a plain program, user + system time as above: in a `Heap` dropped at once, on the "
        "global shardalloc with one free per object, in a bumpalo arena reset after each. "
        "Ratios: the variant's time over the heap's (above 1: the heap is faster).",
        "",
        "| objects | heap base | heap tree | tree/base | global/heap base | global/heap tree | "
        "bumpalo/heap base | bumpalo/heap tree |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rust_rows:
        lines.append("| %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            row["n"], fmt_time(row["base_heap_ns"]), fmt_time(row["tree_heap_ns"]),
            row["tree_heap_ns"] / row["base_heap_ns"],
            row["base_global_ns"] / row["base_heap_ns"], row["tree_global_ns"] / row["tree_heap_ns"],
            row["base_bump_ns"] / row["base_heap_ns"], row["tree_bump_ns"] / row["tree_heap_ns"]))
    lines += [
        "",
        "## Time (criterion, benches/request_heap)",
        "",
        "Ratios are the variant's time divided by the heap's in the same build (above 1: the "
        "heap is faster); `tree/base` is the heap's time in the tree over the base's (below "
        "1: faster now).",
        "",
        "| benchmark | heap base | heap tree | tree/base | vs shardalloc base | vs shardalloc "
        "tree | vs mimalloc base | vs mimalloc tree | vs bumpalo base | vs bumpalo tree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(row, b, v):
        h, x = row.get("%s_heap_ns" % b), row.get("%s_%s_ns" % (b, v))
        return "%.2f" % (x / h) if h and x else "-"

    for row in rows:
        hb, ht = row.get("base_heap_ns"), row.get("tree_heap_ns")
        cells = ["%s/%s" % (row["group"], row["param"]),
                 fmt_time(hb) if hb else "-", fmt_time(ht) if ht else "-",
                 "%.2f" % (ht / hb) if hb and ht else "-"]
        for v in ("shardalloc", "mimalloc", "bumpalo"):
            cells += [ratio(row, "base", v), ratio(row, "tree", v)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(args.out_prefix + ".md", "w") as f:
        f.write(text)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"command": cmd, "date": when, "cpu": cpu, "base": base, "tree": head,
                   "dirty": dirty, "instructions": instr, "cpu_time": cpu_rows,
                   "rust_cpu_time": rust_rows, "rows": rows}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
