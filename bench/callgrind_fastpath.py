#!/usr/bin/env python3
"""Counts the instructions of one malloc+free pair with valgrind's callgrind, per allocator.

Cases (bench/c/fastpath.c): sizes 16, 32, 128 and 1024 bytes and aligned_alloc(64, 64) ("a64"),
each in three modes, plus one cycling mode:
  lone   malloc+free of one object, nothing else live (a page-based allocator's page empties on
         every free: mimalloc 2.0's "retire" path shows here);
  held   malloc+free of one object while one other object of the size stays live (the page
         stays in use and its free list never runs dry);
  live   1000 objects of the size stay live, each iteration frees one and allocates its
         replacement (the page never empties);
  cycle  lone, with the size cycling 16, 32, 128, 1024.
Large blocks: lone and "batch" (64 objects allocated, then all freed, over and over) with
blocks of 128 KiB, 256 KiB and 1 MiB, each a page of its own in shardalloc: the slow paths
that every such malloc and free takes (a table of its own, below the fast paths).
Heap cases ("heap ..."): lone, held and live with mi_heap_malloc(heap, size) from a heap of
mi_heap_new instead of malloc (mimalloc's API, for the allocators that export it; "n/a" for the
others), and the ratio of each to its malloc case.

Method: each case runs twice under `valgrind --tool=callgrind`, with N and 2N iterations after
the same warm-up. Subtracting the two totals (Ir, instructions executed) cancels everything
that does not depend on N: loading, allocator initialisation, the warm-up, exit. From that
difference the loop function's own instructions (its self cost in `callgrind_annotate`, which
includes the PLT jumps to malloc and free, about 9 per iteration) are subtracted too, so

    per pair = ((total(2N) - total(N)) - (loop_self(2N) - loop_self(N))) / N

is what malloc and free execute, everything they call included (page refills, retire paths,
system calls' user-side code). Unlike wall time, instruction counts do not depend on what else
the machine is doing; repeated runs agree to a small fraction of an instruction per pair.

The allocator is swapped with LD_PRELOAD. callgrind, unlike memcheck, massif, helgrind, drd
and dhat, preloads no malloc replacement of its own (there is no vgpreload_callgrind), so the
program's malloc is the preloaded library's. The script checks this: in the N..2N difference
the object file executing most instructions besides the program itself must be the preloaded
library (libc.so.6 for glibc); a case where it is not is marked with '!'.

Usage: bench/callgrind_fastpath.py [--quick] [--n N] [--alloc NAME,...] [--lib NAME=PATH]
                                   [--out-prefix PATH]
Results: printed as a Markdown table, and written to bench/results/fastpath.{json,md}.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib  # noqa: E402

SIZES = ["16", "32", "128", "1024", "a64"]
CASES = [(m, s) for m in ("lone", "held", "live") for s in SIZES] + [("cycle", "16")]
LARGE_CASES = [(m, s) for s in ("131072", "262144", "1048576") for m in ("lone", "batch")]
HEAP_SIZES = ["16", "32", "128", "1024"]
HEAP_CASES = [(m, "h" + s) for m in ("lone", "held", "live") for s in HEAP_SIZES]
NO_HEAP_API = 3  # fastpath's exit status when the allocator has no mi_heap_malloc

# "  1,809,030 ( 7.83%)  file:function [object]"; the object is left out on some lines.
ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)(?:\s+\[(.*)\])?\s*$")
UNKNOWN = "???"


def case_label(mode, size):
    if (mode, size) in LARGE_CASES:
        return "%s %d KiB" % (mode, int(size) >> 10)
    if mode == "cycle":
        return "cycle 16/32/128/1024 B"
    if size.startswith("h"):
        return "heap %s %s B" % (mode, size[1:])
    return "%s %s" % (mode, "aligned 64 B" if size == "a64" else size + " B")


def callgrind_run(alloc, mode, size, n, outdir):
    """Runs one case under callgrind; returns (total Ir, loop self Ir, {object: self Ir})."""
    out = os.path.join(outdir, "%s.%s.%s.%d.out" % (alloc["name"], mode, size, n))
    argv = ["valgrind", "--tool=callgrind", "-q", "--callgrind-out-file=" + out,
            os.path.join(benchlib.BUILD_DIR, "fastpath"), mode, size, str(n)]
    proc = subprocess.run(argv, env=benchlib.preload_env(alloc["path"]), capture_output=True,
                          text=True)
    if proc.returncode == NO_HEAP_API and size.startswith("h"):
        return None
    if proc.returncode != 0:
        raise RuntimeError("%s failed under %s:\n%s" % (" ".join(argv[4:]), alloc["name"],
                                                        proc.stdout + proc.stderr))
    total = None
    with open(out) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    ann = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", out],
                         capture_output=True, text=True, check=True).stdout
    loop_self, per_object = 0, {}
    # The per-function table follows the "Ir  file:function" header.
    table = ann.split("file:function", 1)[-1]
    for line in table.splitlines():
        m = ANNOTATE_LINE.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        func = m.group(2).rsplit(":", 1)[-1]
        obj = m.group(3) or UNKNOWN
        if obj != UNKNOWN:
            obj = os.path.realpath(obj)
        per_object[obj] = per_object.get(obj, 0) + ir
        if func.startswith("loop_"):
            loop_self += ir
    if total is None or loop_self == 0:
        raise RuntimeError("could not read the totals or the loop's cost from " + out)
    return total, loop_self, per_object


def measure(alloc, mode, size, n, outdir):
    first = callgrind_run(alloc, mode, size, n, outdir)
    if first is None:  # no heap API in this allocator
        return {"allocator": alloc["name"], "mode": mode, "size": size, "n": n,
                "per_pair": None, "verified": True}
    t1, l1, o1 = first
    t2, l2, o2 = callgrind_run(alloc, mode, size, 2 * n, outdir)
    per_pair = ((t2 - t1) - (l2 - l1)) / n
    loop = (l2 - l1) / n
    # Which object executed the instructions that scale with N (the program itself aside)? It
    # must be the preloaded library (libc.so.6 for glibc). valgrind cannot name the object of
    # code outside an object's .text (tcmalloc keeps malloc in its own "google_malloc"
    # section): "???" passes for a preloaded library when libc runs nothing per iteration.
    diff = {obj: o2.get(obj, 0) - o1.get(obj, 0) for obj in set(o1) | set(o2)
            if not obj.endswith("/fastpath")}
    top = max(diff, key=diff.get) if diff else None
    libc = sum(v for obj, v in diff.items() if os.path.basename(obj) == "libc.so.6")
    if alloc["path"] is None:
        verified = top is not None and os.path.basename(top) == "libc.so.6"
    else:
        verified = top == os.path.realpath(alloc["path"]) or (top == UNKNOWN and libc < n)
    return {"allocator": alloc["name"], "mode": mode, "size": size, "n": n,
            "per_pair": per_pair, "loop_per_iter": loop, "top_object": top,
            "verified": verified, "totals": [t1, t2], "loop_self": [l1, l2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 20000 instead of 100000")
    ap.add_argument("--n", type=int, help="iterations of the shorter run")
    benchlib.add_common_args(ap, "fastpath")
    args = ap.parse_args()
    n = args.n or (20000 if args.quick else 100000)

    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit("%s not found: apt-get install valgrind" % tool)
    allocs, notes = benchlib.selected_or_exit(*benchlib.select_allocators(
        args.alloc.split(",") if args.alloc else None, args.lib))
    benchlib.build_programs()
    outdir = os.path.join(benchlib.BUILD_DIR, "callgrind")
    os.makedirs(outdir, exist_ok=True)

    machine = benchlib.machine_info()
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["bench/callgrind_fastpath.py"] + sys.argv[1:])
    started = time.time()
    jobs = [(a, mode, size) for mode, size in CASES + HEAP_CASES + LARGE_CASES for a in allocs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [pool.submit(measure, a, mode, size, n, outdir) for a, mode, size in jobs]
        results = [f.result() for f in futures]

    names = [a["name"] for a in allocs]
    by_key = {(r["allocator"], r["mode"], r["size"]): r for r in results}
    lines = ["Machine: " + benchlib.machine_line(machine),
             "Allocators: " + benchlib.versions_line(allocs) + "; " + vg,
             "Command: `%s` (N = %d; instructions per malloc+free pair, loop excluded)" % (
                 command, n)]
    lines += ["Note: " + x for x in notes]
    header = ["", "| case | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += header
    unverified = []
    for mode, size in CASES + HEAP_CASES + LARGE_CASES:
        if (mode, size) == LARGE_CASES[0]:
            lines += ["", "Large blocks (lone; batch: 64 allocated, then freed):"] + header
        cells = []
        for name in names:
            r = by_key[(name, mode, size)]
            if r["per_pair"] is None:
                cells.append("n/a")
                continue
            cell = "%.1f" % r["per_pair"]
            if size.startswith("h"):  # against the same case with malloc
                cell += " (%.2fx)" % (r["per_pair"] / by_key[(name, mode, size[1:])]["per_pair"])
            if not r["verified"]:
                cell += " !"
                unverified.append("%s %s: most instructions in %s" % (
                    name, case_label(mode, size), r["top_object"]))
            cells.append(cell)
        lines.append("| %s | %s |" % (case_label(mode, size), " | ".join(cells)))
    loops = sorted({round(r["loop_per_iter"], 1) for r in results if r["per_pair"] is not None})
    lines += ["", "Loop instructions subtracted per iteration: %s." % ", ".join(
        "%g" % x for x in loops)]
    for u in unverified:
        lines.append("! not the preloaded allocator: " + u)
    report = "\n".join(lines) + "\n"
    print(report)
    print("total run time %.0f s" % (time.time() - started))

    os.makedirs(os.path.dirname(os.path.abspath(args.out_prefix)), exist_ok=True)
    with open(args.out_prefix + ".md", "w") as f:
        f.write(report)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"machine": machine, "valgrind": vg, "command": command, "n": n,
                   "allocators": allocs, "notes": notes, "results": results}, f, indent=1)
    print("wrote %s.json and %s.md" % (args.out_prefix, args.out_prefix))
    return 1 if unverified else 0


if __name__ == "__main__":
    sys.exit(main())
