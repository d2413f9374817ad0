#!/usr/bin/env python3
"""Runs the C benchmark programs (bench/c) under each allocator via LD_PRELOAD and prints
Markdown tables of medians with ratios to glibc.

Allocators: glibc (no preload), Debian's jemalloc, mimalloc and tcmalloc, and shardalloc's
c_src/build/libshardalloc.so; a missing library is skipped with a note saying how to get it.
More can be added with --lib NAME=PATH.

Method:
  - Each repetition runs every program under every allocator, the allocators one after the
    other for each program (their order rotates each repetition), so slow drifts of the
    machine's speed hit all allocators alike.
  - Per run: wall time of the whole process (perf_counter around spawn and wait4), user+sys CPU
    time from the child's rusage (os.wait4), peak RSS and minor page faults from
    /usr/bin/time -f '%M %R' (see run_once for why not from wait4), and the time the program
    measured itself (its work loop only, without process start and exit).
  - The tables show medians over the repetitions, "value (ratio to glibc)", and a last row with
    the geometric mean of the ratios over the programs.
  - Results: bench/results/c_bench.json (every run and the medians) and c_bench.md (the tables).

Usage: bench/run_c_bench.py [--quick] [--reps R] [--only PROG,...] [--alloc NAME,...]
                            [--lib NAME=PATH] [--variant NAME=BASE,VAR=VALUE] [--out-prefix PATH]
"""

import argparse
import json
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib  # noqa: E402

# Why --warmup: on a virtual machine, memory a process gave back when it exited may have been
# handed back to the host, and the next process to use it pays for the host taking it again:
# `large_blocks` under shardalloc took 9.4 s right after tcmalloc's run of it and 0.8 s right
# after glibc's (96 % of the time in the kernel's clear_page). Since each repetition runs the
# allocators in the same cyclic order, that cost would always land on the same allocator.
WARMUP_NOTE = ("each measured run came right after an unmeasured run of the same program under "
               "the same allocator (--warmup), so that no allocator pays for memory the previous "
               "process released")

# name, argv (relative to bench/build), argv for --quick. Defaults run 1-2.5 s each under
# glibc on a 2-core machine; quick ones about a quarter of that.
PROGRAMS = [
    ("larson", ["larson"], ["larson", "2", "12"]),
    ("xmalloc", ["xmalloc"], ["xmalloc", "2", "1000000"]),
    ("producer_consumer", ["producer_consumer"], ["producer_consumer", "10"]),
    ("cfrac_like", ["cfrac_like"], ["cfrac_like", "1", "400000"]),
    ("cache_scratch", ["cache_scratch"], ["cache_scratch", "2", "2000", "8", "40000"]),
    ("cache_thrash", ["cache_scratch", "--thrash"],
     ["cache_scratch", "--thrash", "2", "2000", "8", "40000"]),
    ("realloc_heavy", ["realloc_heavy"], ["realloc_heavy", "1", "10"]),
    ("large_blocks", ["large_blocks"], ["large_blocks", "1", "80"]),
    ("thread_churn", ["thread_churn"], ["thread_churn", "200", "30"]),
    ("thread_churn_xfree", ["thread_churn", "512", "20", "100", "256", "4"],
     ["thread_churn", "512", "5", "100", "256", "4"]),
    ("fork_churn", ["fork_churn", "2", "200"], ["fork_churn", "2", "50"]),
]

METRICS = [
    # key, table title, format
    ("wall_s", "Wall time of the process (s)", "%.3f"),
    ("own_s", "Time the program measured itself (s)", "%.3f"),
    ("cpu_s", "CPU time, user + sys (s)", "%.3f"),
    ("maxrss_mib", "Peak RSS (MiB)", "%.1f"),
    ("minflt", "Minor page faults", "%.0f"),
    ("mops", "Throughput the program reported (M ops/s, higher is better; only programs that "
     "report one)", "%.2f"),
]

RUN_TIMEOUT_S = 120


TIME_BIN = "/usr/bin/time"


def run_once(argv, env):
    """Runs argv to completion; returns a dict of measurements (rc != 0 on failure).

    Peak RSS and minor faults come from /usr/bin/time when it is there: the kernel's ru_maxrss
    of a process includes the memory of its image before exec, which for a child spawned by
    this script is the Python interpreter's (about 15 MiB), while /usr/bin/time's child starts
    from that small program (about 1 MiB). Without it they come from wait4 and carry that floor.
    CPU time always comes from wait4 (microseconds; /usr/bin/time prints hundredths)."""
    use_time = os.access(TIME_BIN, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as tfile:
        spawn_argv = argv
        if use_time:
            spawn_argv = [TIME_BIN, "-o", tfile.name, "-f", "maxrss_kib=%M minflt=%R"] + argv
        t0 = time.perf_counter()
        pid = os.posix_spawn(spawn_argv[0], spawn_argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
        ])
        timer = threading.Timer(RUN_TIMEOUT_S, os.kill, (pid, signal.SIGKILL))
        timer.start()
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
        timed = re.search(r"maxrss_kib=(\d+) minflt=(\d+)", tfile.read()) if use_time else None
    rc = os.waitstatus_to_exitcode(status)
    m = re.search(r"([0-9]+\.[0-9]+) s\b", text)
    return {
        "rc": rc,
        "wall_s": wall,
        "own_s": float(m.group(1)) if m else None,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "maxrss_mib": (int(timed.group(1)) if timed else ru.ru_maxrss) / 1024.0,
        "minflt": int(timed.group(2)) if timed else ru.ru_minflt,
        "mops": float(ops.group(1)) if (ops := re.search(r"([0-9.]+) M ops/s", text)) else None,
        "output": text,
    }


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def markdown_table(title, fmt, key, progs, allocs, med):
    names = [a["name"] for a in allocs]
    lines = ["### " + title, "", "| program | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    ratios = {n: [] for n in names}
    for prog in progs:
        if all(med[prog].get(n) and med[prog][n].get(key) is None for n in names):
            continue  # a metric this program does not report
        base = med[prog].get("glibc", {}).get(key)
        cells = []
        for n in names:
            v = med[prog].get(n, {}).get(key)
            if v is None:
                cells.append("FAIL" if n in med[prog] else "-")
                continue
            cell = fmt % v
            if base:
                r = v / base
                ratios[n].append(r)
                cell += " (%.2f)" % r
            cells.append(cell)
        lines.append("| %s | %s |" % (prog, " | ".join(cells)))
    gm = []
    for n in names:
        g = geomean(ratios[n])
        gm.append("(%.2f)" % g if g is not None else "-")
    lines.append("| geometric mean of ratios | %s |" % " | ".join(gm))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="one repetition with shorter arguments (about 1 minute)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, 1 with --quick)")
    ap.add_argument("--only", help="comma-separated program names (default: all)")
    ap.add_argument("--warmup", action="store_true",
                    help="before each measured run, run the same program under the same "
                         "allocator once, unmeasured (see WARMUP_NOTE)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=BASE,VAR=VALUE",
                    help="also run allocator BASE with these environment variables, as NAME "
                         "(repeatable; e.g. shardalloc-thp=shardalloc,"
                         "SHARDALLOC_ALLOW_LARGE_OS_PAGES=1)")
    benchlib.add_common_args(ap, "c_bench")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 5)

    progs = PROGRAMS
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {p[0] for p in PROGRAMS}
        if unknown:
            sys.exit("unknown program(s): %s" % ", ".join(sorted(unknown)))
        progs = [p for p in PROGRAMS if p[0] in wanted]
    allocs, notes = benchlib.selected_or_exit(*benchlib.select_allocators(
        args.alloc.split(",") if args.alloc else None, args.lib))
    benchlib.add_variants(allocs, args.variant)

    benchlib.build_programs()
    machine = benchlib.machine_info()
    command = " ".join(["bench/run_c_bench.py"] + sys.argv[1:])
    print("machine: " + benchlib.machine_line(machine))
    print("allocators: " + benchlib.versions_line(allocs))
    print("command: %s (%d repetition%s)" % (command, reps, "" if reps == 1 else "s"))

    runs = []
    started = time.time()
    for rep in range(reps):
        for prog, argv, quick_argv in progs:
            argv = list(quick_argv if args.quick else argv)
            argv[0] = os.path.join(benchlib.BUILD_DIR, argv[0])
            k = rep % len(allocs)
            for alloc in allocs[k:] + allocs[:k]:
                if args.warmup:
                    run_once(argv, benchlib.alloc_env(alloc))
                r = run_once(argv, benchlib.alloc_env(alloc))
                r.update({"program": prog, "allocator": alloc["name"], "rep": rep,
                          "argv": [os.path.basename(argv[0])] + argv[1:]})
                runs.append(r)
                status = "ok" if r["rc"] == 0 else "FAILED rc=%d" % r["rc"]
                print("[%d/%d] %-13s %-10s %7.3f s  %s" % (
                    rep + 1, reps, prog, alloc["name"], r["wall_s"], status), flush=True)
                if r["rc"] != 0:
                    print("    " + r["output"].replace("\n", "\n    "))

    # Medians per program and allocator; a failed run makes the cell FAIL.
    med = {}
    for prog, _, _ in progs:
        med[prog] = {}
        for alloc in allocs:
            rs = [r for r in runs if r["program"] == prog and r["allocator"] == alloc["name"]]
            if any(r["rc"] != 0 for r in rs):
                med[prog][alloc["name"]] = {}
                continue
            med[prog][alloc["name"]] = {
                key: statistics.median([r[key] for r in rs])
                if all(r[key] is not None for r in rs) else None
                for key, _, _ in METRICS}

    # The cfrac_like checksum must not depend on the allocator.
    sums = {r["allocator"]: re.search(r"checksum (\w+)", r["output"])
            for r in runs if r["program"] == "cfrac_like" and r["rc"] == 0}
    if len({m.group(1) for m in sums.values() if m}) > 1:
        print("WARNING: cfrac_like checksums differ between allocators")

    prog_names = [p[0] for p in progs]
    header = ["Machine: " + benchlib.machine_line(machine),
              "Allocators: " + benchlib.versions_line(allocs),
              "Command: `%s` (%d repetition%s, medians; ratio to glibc in parentheses)" % (
                  command, reps, "" if reps == 1 else "s")]
    header += ["Note: " + n for n in notes + ([WARMUP_NOTE] if args.warmup else [])]
    tables = [markdown_table(title, fmt, key, prog_names, allocs, med)
              for key, title, fmt in METRICS]
    report = "\n".join(header) + "\n\n" + "\n\n".join(tables) + "\n"
    print()
    print(report)
    print("total run time %.0f s" % (time.time() - started))

    os.makedirs(os.path.dirname(os.path.abspath(args.out_prefix)), exist_ok=True)
    with open(args.out_prefix + ".md", "w") as f:
        f.write(report)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"machine": machine, "command": command, "reps": reps, "quick": args.quick,
                   "allocators": allocs, "notes": notes,
                   "programs": {p[0]: (p[2] if args.quick else p[1]) for p in progs},
                   "medians": med, "runs": runs}, f, indent=1)
    print("wrote %s.json and %s.md" % (args.out_prefix, args.out_prefix))
    return 1 if any(r["rc"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
