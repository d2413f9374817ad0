#!/usr/bin/env python3
"""Runs bench/build/latency (the time of each malloc and free) under each allocator via
LD_PRELOAD and prints Markdown tables of its percentiles.

Allocators: those of benchlib (glibc, Debian's jemalloc, mimalloc 2.0 and tcmalloc, shardalloc's
c_src/build/libshardalloc.so), mimalloc 3 from bench/build/libmimalloc3.so when that file
exists (bench/README.md says how to build it), and any --lib NAME=PATH. --build-shardalloc DIR
builds shardalloc into DIR (make -C c_src shared BUILD_DIR=DIR) and uses that library instead of
c_src/build's; a --lib with a known allocator's name replaces that allocator.

Method:
  - Each repetition runs the program once under every allocator, in an order that rotates with
    the repetition. The program's phases (1 thread, 2 threads, ...) each report p50, p90, p99,
    p99.9, p99.99 and the maximum of malloc, free and the first write to a new block ("touch"),
    in ns; the tables show the median of each over the repetitions. Nine by default: one run's
    p99.99 of free is the 50th slowest of 500,000 calls, and it varies up to 2x between runs
    of the same allocator on this machine (nine runs: 368-736 ns for shardalloc, 304-1216 for
    mimalloc 2.0); medians of five put the same two allocators in either order from one batch
    to the next.
  - Before each run the 1-minute load average is recorded: on a shared 2-core machine the
    2-thread phase competes with everything else (see the involuntary context switches).
  - On a virtual machine that hands free memory back to its host (free page reporting), each
    run is preceded by benchlib.prime_host_memory (512 MiB touched and freed), so that no run
    pays the host's refill of the huge pages it faults because it follows a pause; --no-prime
    measures without it (every run then starts after a pause of PAUSE_S seconds, long enough
    for the kernel to report what the last run freed).
  - With --detail (default on, off with --quick), one more run per allocator with
    `latency --detail` breaks the calls above p99.9 down by size class and by whether a page
    fault happened inside the call; and, when strace is installed, one run per allocator and
    thread count under `strace -f -c` counts the memory system calls of each phase.
  - Results: bench/results/latency.json (every run) and latency.md (the tables). A section of
    latency.md headed "## Where the tail comes from" is written by hand; a rerun keeps it.

Usage: bench/latency.py [--quick] [--reps R] [--ops N] [--threads T] [--no-detail] [--no-prime]
                        [--alloc NAME,...] [--lib NAME=PATH] [--build-shardalloc DIR]
                        [--out-prefix PATH]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib  # noqa: E402

PROGRAM = os.path.join(benchlib.BUILD_DIR, "latency")
MIMALLOC3 = os.path.join(benchlib.BUILD_DIR, "libmimalloc3.so")
QUANTILES = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]
KINDS = ["malloc", "free", "touch"]
SYSCALLS = ["mmap", "munmap", "madvise", "mprotect", "brk", "futex"]
HAND_SECTION = "## Where the tail comes from"
RUN_TIMEOUT_S = 300
PAUSE_S = 4  # --no-prime: the kernel reports free memory about 2 s after it is freed


def parse_output(text):
    """The program's records as dicts: {"clock": {...}, "phases": {T: {...}}, "rows": {...}}."""
    out = {"clock": {}, "phases": {}, "rows": {}, "class": {}, "classfaults": {}, "tail": {}}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        fields = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            try:
                fields[k] = float(v) if "." in v or "e" in v else int(v)
            except ValueError:
                fields[k] = v
        rec = parts[0]
        if rec == "clock":
            out["clock"] = fields
        elif rec == "phase":
            out["phases"][str(fields["threads"])] = fields
        elif rec == "row":
            out["rows"]["%s/%s" % (fields["threads"], fields["kind"])] = fields
        elif rec in ("class", "classfaults"):
            out[rec]["%s/%s/%s" % (fields["threads"], fields["kind"], fields["class"])] = fields
        elif rec == "tail":
            out["tail"]["%s/%s/%s" % (fields["threads"], fields["kind"], fields["above"])] = fields
    return out


def run_program(argv, env):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


def strace_counts(argv, env):
    """Counts of the memory system calls of one run under strace -f -c (all threads)."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as f:
        # The allocator goes to the program only: strace itself must run on the system one.
        cmd = ["strace", "-f", "-c", "-o", f.name, "-e", "trace=" + ",".join(SYSCALLS),
               "-E", "LD_PRELOAD=" + env["LD_PRELOAD"]] if "LD_PRELOAD" in env else \
              ["strace", "-f", "-c", "-o", f.name, "-e", "trace=" + ",".join(SYSCALLS)]
        clean = dict(env)
        clean.pop("LD_PRELOAD", None)
        proc = subprocess.run(cmd + argv, env=clean, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
        if proc.returncode != 0:
            return None
        counts = {s: 0 for s in SYSCALLS}
        for line in f.read().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m and m.group(2) in counts:
                counts[m.group(2)] = int(m.group(1))
        return counts


def before_run(no_prime):
    """Every run starts from the same state of the host's memory (see the module's doc)."""
    if benchlib.free_page_reporting() is None:
        return
    if no_prime:
        time.sleep(PAUSE_S)
    else:
        benchlib.prime_host_memory()


def host_memory_line(no_prime):
    order = benchlib.free_page_reporting()
    if order is None:
        return "Host memory: this machine does not report free memory to a host"
    return ("Host memory: the kernel reports free blocks of order %d (%d KiB) to the host; %s" % (
        order, 4 << order,
        "each run after a pause of %d s (huge page faults on reported memory)" % PAUSE_S
        if no_prime else "%d MiB touched and freed before each run (bench/benchlib.py, "
        "prime_host_memory)" % benchlib.PRIME_MIB))


def load_average():
    return round(os.getloadavg()[0], 2)


def fmt_ns(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return "%.1f ms" % (v / 1e6)
    if v >= 1e4:
        return "%.0f µs" % (v / 1e3)
    if v >= 1e3:
        return "%.1f µs" % (v / 1e3)
    return "%.0f" % v


def select(args):
    extra = list(args.lib)
    if args.build_shardalloc:
        build = os.path.abspath(args.build_shardalloc)
        proc = subprocess.run(["make", "-s", "-C", os.path.join(benchlib.REPO_ROOT, "c_src"),
                               "shared", "BUILD_DIR=" + build], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            sys.exit("building shardalloc failed")
        extra.append("shardalloc=" + os.path.join(build, "libshardalloc.so"))
    extra_names = [e.split("=", 1)[0] for e in extra]
    if os.path.exists(MIMALLOC3) and "mimalloc3" not in extra_names and not args.alloc:
        extra.append("mimalloc3=" + MIMALLOC3)
        extra_names.append("mimalloc3")
    known = [a[0] for a in benchlib.ALLOCATORS]
    names = args.alloc.split(",") if args.alloc else known
    names = [n for n in names if n not in extra_names]  # a --lib of the same name replaces it
    return benchlib.select_allocators(names, extra)


def median_rows(runs, allocs, threads_list):
    med = {}
    for a in allocs:
        rs = [r for r in runs if r["allocator"] == a["name"] and r["rc"] == 0]
        med[a["name"]] = {}
        if not rs:
            continue
        for t in threads_list:
            for kind in KINDS:
                key = "%d/%s" % (t, kind)
                med[a["name"]][key] = {
                    q: statistics.median(r["parsed"]["rows"][key][q] for r in rs)
                    for q in QUANTILES + ["mean"]}
            pkey = str(t)
            med[a["name"]]["phase/" + pkey] = {
                f: statistics.median(r["parsed"]["phases"][pkey][f] for r in rs)
                for f in ("seconds", "minflt", "nivcsw")}
    return med


def tables(allocs, med, threads_list, ops):
    out = []
    for t in threads_list:
        for kind in KINDS:
            out += ["### %s, %d thread%s (ns, medians)" % (kind, t, "" if t == 1 else "s"), "",
                    "| allocator | mean | " + " | ".join(QUANTILES) + " |",
                    "|---|" + "---:|" * (len(QUANTILES) + 1)]
            for a in allocs:
                row = med[a["name"]].get("%d/%s" % (t, kind))
                if row is None:
                    out.append("| %s | FAIL |" % a["name"])
                    continue
                out.append("| %s | %.0f | %s |" % (a["name"], row["mean"], " | ".join(
                    fmt_ns(row[q]) for q in QUANTILES)))
            out.append("")
    out += ["### Per phase: wall time, minor page faults and involuntary context switches of "
            "the measured operations (%d per thread; medians)" % ops, "",
            "| allocator | " + " | ".join("%d thr: s / faults / preempted" % t
                                         for t in threads_list) + " |",
            "|---|" + "---:|" * len(threads_list)]
    for a in allocs:
        cells = []
        for t in threads_list:
            p = med[a["name"]].get("phase/%d" % t)
            cells.append("-" if p is None else "%.3f / %.0f / %.0f" % (
                p["seconds"], p["minflt"], p["nivcsw"]))
        out.append("| %s | %s |" % (a["name"], " | ".join(cells)))
    out.append("")
    return out


def detail_tables(allocs, detail, syscalls, threads_list):
    out = []
    if detail:
        out += ["### Which calls are slow (`latency --detail`, one run; 1 thread)", "",
                "Calls of malloc above that run's p99.9: how many, the share from each size "
                "class, and the share that took a page fault inside malloc; and page faults "
                "per malloc call of each size class.", "",
                "| allocator | p99.9 (ns) | calls | 8-256 | 257-4K | 4K-64K | 64K-4M | "
                "with a fault | faults/call 4K-64K | faults/call 64K-4M |",
                "|---|" + "---:|" * 9]
        for a in allocs:
            d = detail.get(a["name"])
            tail = d and d["tail"].get("1/malloc/p99.9")
            if not tail:
                out.append("| %s | FAIL |" % a["name"])
                continue
            n = tail["count"] or 1
            pct = lambda k: "%.0f %%" % (100.0 * tail[k] / n)  # noqa: E731
            cf = d["classfaults"]
            out.append("| %s | %s | %d | %s | %s | %s | %s | %s | %.3f | %.3f |" % (
                a["name"], fmt_ns(tail["threshold"]), tail["count"], pct("class_8-256"),
                pct("class_257-4K"), pct("class_4K-64K"), pct("class_64K-4M"),
                pct("with_fault"), cf["1/malloc/4K-64K"]["faults_per_call"],
                cf["1/malloc/64K-4M"]["faults_per_call"]))
        out.append("")
    if syscalls:
        out += ["### Memory system calls per phase (`strace -f -c`, one run each)", "",
                "| allocator | " + " | ".join(
                    "%s %d thr" % (s, t) for t in threads_list for s in SYSCALLS[:4]) + " |",
                "|---|" + "---:|" * (4 * len(threads_list))]
        for a in allocs:
            s = syscalls.get(a["name"])
            if not s:
                out.append("| %s | FAIL |" % a["name"])
                continue
            out.append("| %s | %s |" % (a["name"], " | ".join(
                str(s[str(t)][c]) for t in threads_list for c in SYSCALLS[:4])))
        out += ["", "Counts include the warm-up, process start and exit; a phase's count is "
                "the difference between the runs up to it and up to the one before."
                " Per-call page faults come from the thread's rusage around each call.", ""]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[1:]))
    ap.add_argument("--quick", action="store_true",
                    help="one repetition of 200000 operations, no detail runs (under a minute)")
    ap.add_argument("--reps", type=int, help="repetitions (default 9, 1 with --quick)")
    ap.add_argument("--ops", type=int,
                    help="measured operations per thread and phase (default 1000000)")
    ap.add_argument("--threads", type=int, default=2,
                    help="phases of 1, 2, 4 ... up to this many threads (default 2)")
    ap.add_argument("--no-detail", action="store_true",
                    help="skip the --detail and strace runs")
    ap.add_argument("--no-prime", action="store_true",
                    help="no priming of the host's memory; a pause before each run instead")
    ap.add_argument("--build-shardalloc", metavar="DIR",
                    help="build shardalloc into DIR and run that libshardalloc.so")
    benchlib.add_common_args(ap, "latency")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 9)
    ops = args.ops or (200000 if args.quick else 1000000)
    warmup = max(ops // 10, 20000)
    want_detail = not (args.quick or args.no_detail)

    allocs, notes = benchlib.selected_or_exit(*select(args))
    benchlib.build_programs()
    machine = benchlib.machine_info()
    command = " ".join(["bench/latency.py"] + sys.argv[1:])
    threads_list = []
    t = 1
    while t <= args.threads:
        threads_list.append(t)
        t *= 2
    argv = [PROGRAM, str(ops), str(args.threads), str(warmup)]
    print("machine: " + benchlib.machine_line(machine))
    print("allocators: " + benchlib.versions_line(allocs))
    print("command: %s (%d repetition%s)" % (command, reps, "" if reps == 1 else "s"))

    runs = []
    started = time.time()
    for rep in range(reps):
        k = rep % len(allocs)
        for alloc in allocs[k:] + allocs[:k]:
            before_run(args.no_prime)
            load = load_average()
            rc, text = run_program(argv, benchlib.preload_env(alloc["path"]))
            parsed = parse_output(text) if rc == 0 else None
            runs.append({"allocator": alloc["name"], "rep": rep, "load1": load, "rc": rc,
                         "argv": ["latency"] + argv[1:], "parsed": parsed,
                         "output": None if rc == 0 else text})
            summary = "FAILED rc=%d" % rc
            if parsed:
                row = parsed["rows"]["1/malloc"]
                summary = "malloc 1 thr p99.9 %s p99.99 %s" % (fmt_ns(row["p99.9"]),
                                                              fmt_ns(row["p99.99"]))
            print("[%d/%d] %-11s load %5.2f  %s" % (rep + 1, reps, alloc["name"], load, summary),
                  flush=True)
            if rc != 0:
                print("    " + text.replace("\n", "\n    "))

    detail, syscalls = {}, {}
    if want_detail:
        for alloc in allocs:
            env = benchlib.preload_env(alloc["path"])
            before_run(args.no_prime)
            rc, text = run_program([PROGRAM, "--detail"] + argv[1:], env)
            detail[alloc["name"]] = parse_output(text) if rc == 0 else None
            if shutil.which("strace"):
                per_run = {}
                for t in threads_list:
                    per_run[t] = strace_counts([PROGRAM, str(ops), str(t), str(warmup)], env)
                if all(per_run.values()):
                    # A phase's calls: the run up to it minus the run up to the one before.
                    syscalls[alloc["name"]] = {
                        str(t): {s: per_run[t][s] - (per_run[t // 2][s] if t > 1 else 0)
                                 for s in SYSCALLS}
                        for t in threads_list}
            print("detail %-11s done" % alloc["name"], flush=True)

    med = median_rows(runs, allocs, threads_list)
    loads = [r["load1"] for r in runs]
    header = ["Machine: " + benchlib.machine_line(machine),
              "Allocators: " + benchlib.versions_line(allocs),
              "Command: `%s` (%d repetition%s of `%s`, medians)" % (
                  command, reps, "" if reps == 1 else "s", " ".join(["latency"] + argv[1:])),
              "Load average (1 min) before the runs: %.2f to %.2f, median %.2f" % (
                  min(loads), max(loads), statistics.median(loads)),
              host_memory_line(args.no_prime)]
    header += ["Note: " + n for n in notes]
    body = tables(allocs, med, threads_list, ops)
    body += detail_tables(allocs, detail, syscalls, threads_list)
    report = "\n".join(header) + "\n\n" + "\n".join(body)
    print()
    print(report)
    print("total run time %.0f s" % (time.time() - started))

    os.makedirs(os.path.dirname(os.path.abspath(args.out_prefix)), exist_ok=True)
    md_path = args.out_prefix + ".md"
    kept = ""
    if os.path.exists(md_path):
        old = open(md_path).read()
        i = old.find(HAND_SECTION)
        if i >= 0:
            kept = "\n" + old[i:]
    with open(md_path, "w") as f:
        f.write("# Latency of single allocator calls (`bench/latency.py`)\n\n" + report + kept)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"machine": machine, "command": command, "reps": reps,
                   "quick": args.quick, "argv": ["latency"] + argv[1:], "allocators": allocs,
                   "notes": notes, "primed": not args.no_prime, "medians": med,
                   "detail": detail, "syscalls": syscalls,
                   "runs": runs}, f, indent=1)
    print("wrote %s.json and %s.md" % (args.out_prefix, args.out_prefix))
    return 1 if any(r["rc"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
