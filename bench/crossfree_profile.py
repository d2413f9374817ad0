#!/usr/bin/env python3
"""Where a cross-thread producer/consumer spends its time: bench/c/producer_consumer.c under
each allocator (wall time of its work loop and the process's CPU time, interleaved runs,
median and minimum), then shardalloc's run under `perf record` (CPU-clock samples) with the
symbols that take the most samples, split into the producer's and the consumer's side.

Usage: bench/crossfree_profile.py [--reps R] [--rounds N] [--alloc NAME,...] [--lib NAME=PATH]
                                  [--out-prefix PATH]
Results: bench/results/crossfree.{md,json}. Needs `perf` for the profile (skipped without).
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

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib  # noqa: E402

SIZES = [("64 B", "64"), ("8-1024 B", "0")]
# the work loop's own time, printed by the program
OWN_TIME = re.compile(r"([0-9.]+) s, ")


def run_once(alloc, argv):
    proc = subprocess.run(["/usr/bin/time", "-f", "CPU %U %S"] + argv,
                          env=benchlib.preload_env(alloc["path"]), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError("%s failed under %s: %s" % (argv, alloc["name"], proc.stderr))
    own = float(OWN_TIME.search(proc.stdout).group(1))
    user, sys_ = re.search(r"CPU ([0-9.]+) ([0-9.]+)", proc.stderr).groups()
    return own, float(user) + float(sys_)


def profile(alloc, argv):
    """Top symbols of a perf record run: [(percent, side, symbol)]."""
    if shutil.which("perf") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-o", data, "--"] + argv,
                       env=benchlib.preload_env(alloc["path"]), capture_output=True, check=True)
        out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "comm,sym", "--percent-limit", "2"],
                             capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s+([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(\S.*)$", line)
        if m:
            pct, comm, kind, sym = m.groups()
            rows.append((float(pct), comm, ("kernel: " if kind == "k" else "") + sym.strip()))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="runs per allocator and size (7)")
    ap.add_argument("--rounds", type=int, default=40, help="rounds of 64000 blocks (40)")
    benchlib.add_common_args(ap, "crossfree")
    args = ap.parse_args()
    benchlib.build_programs()
    allocs, notes = benchlib.selected_or_exit(*benchlib.select_allocators(
        args.alloc.split(",") if args.alloc else None, args.lib))
    prog = os.path.join(benchlib.BENCH_DIR, "build", "producer_consumer")
    info = benchlib.machine_info()
    results = {}
    for label, size in SIZES:
        argv = [prog, str(args.rounds), "64000", size]
        runs = {a["name"]: [] for a in allocs}
        for r in range(args.reps):  # interleaved, the order rotating: drifts hit all alike
            for a in allocs[r % len(allocs):] + allocs[:r % len(allocs)]:
                runs[a["name"]].append(run_once(a, argv))
        results[label] = {"argv": argv[1:], "runs": runs}
        shard = next((a for a in allocs if a["name"] == "shardalloc"), None)
        if shard is not None:
            results[label]["profile"] = profile(shard, argv)

    lines = ["# Cross-thread frees: producer/consumer", "",
             "Machine: " + benchlib.machine_line(info),
             "Allocators: " + benchlib.versions_line(allocs),
             "Command: `bench/crossfree_profile.py %s`" % " ".join(sys.argv[1:]), ""]
    lines += notes
    for label, res in results.items():
        lines += ["## %s blocks (`producer_consumer %s`)" % (label, " ".join(res["argv"])), "",
                  "| allocator | work loop, median (s) | min (s) | CPU, median (s) |",
                  "|---|---:|---:|---:|"]
        for name, runs in res["runs"].items():
            own = [o for o, _ in runs]
            cpu = [c for _, c in runs]
            lines.append("| %s | %.3f | %.3f | %.3f |" % (name, statistics.median(own), min(own),
                                                         statistics.median(cpu)))
        prof = res.get("profile")
        if prof:
            lines += ["", "shardalloc under `perf record` (share of CPU-clock samples, 2% and up; "
                      "thread `consumer` frees, the other allocates). `_sa_page_collect`: the "
                      "owner takes in a page's cross-thread list (it walks the list chain by "
                      "chain: a cache miss or two per chain the consumer pushed); "
                      "`_sa_remote_free`: the consumer gathers a block into its page's chain "
                      "(a link written into the block); `chain_push`, `_sa_free_chain_mt`: a "
                      "chain's pointers checked, then one CAS for the chain; "
                      "`_sa_free_generic`, `checked_page_any`, `free`: the consumer's "
                      "cross-thread free (reads of the page descriptor, the line the owner "
                      "writes on every allocation); "
                      "`consumer`, `main`: the program reading and writing the blocks; kernel "
                      "symbols: the threads blocking on the queue.",
                      "", "| share | thread | symbol |", "|---:|---|---|"]
            lines += ["| %.1f%% | %s | `%s` |" % row for row in prof]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out_prefix)), exist_ok=True)
    with open(args.out_prefix + ".md", "w") as f:
        f.write(text)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"machine": info, "allocators": allocs, "results": results}, f, indent=1)
    print("wrote %s.md and %s.json" % (args.out_prefix, args.out_prefix))


if __name__ == "__main__":
    main()
