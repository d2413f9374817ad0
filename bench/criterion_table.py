#!/usr/bin/env python3
"""Reads the criterion results of `cargo bench --bench allocators` and writes a Markdown table
of shardalloc's throughput relative to the system allocator, mimalloc and jemalloc, with the
geometric mean of each column.

    python3 bench/criterion_table.py                 # target/criterion -> bench/results/criterion.{md,json}
    python3 bench/criterion_table.py --criterion-dir DIR --out-prefix PATH
    python3 bench/criterion_table.py --criterion-dir RUN1 --criterion-dir RUN2   # best of runs

The benchmark IDs are `<group>/<allocator>/<parameter>` (benches/allocators.rs). For each
(group, parameter), the script takes the median time per iteration (criterion's
`median.point_estimate` in `new/estimates.json`) of each allocator; given several runs (copies
of `target/criterion` from separate `cargo bench` runs), the least of the runs' medians, since
load from elsewhere on the machine only ever adds time. Every allocator does the
same work per iteration, so throughput ratios are ratios of times:

    ratio vs X = time(X) / time(shardalloc)      (above 1: shardalloc is faster)

A cell is marked when it misses the goal (below 1.00 vs system, below 0.95 vs
mimalloc).

The groups of `shardalloc::Heap` (request_heap, heap_destroy) compare other variants (a heap
dropped at once, the global shardalloc and mimalloc, bumpalo) and get a table of their own,
with ratios to the heap's time. The file's head names the machine, the commit and the date
the table was written (run it right after the `cargo bench` it reads). Standard library only.
"""

import argparse
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (bench/benchlib.py: machine and commit)

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
ALLOCATORS = ["shardalloc", "system", "mimalloc", "jemalloc"]
PEERS = ["system", "mimalloc", "jemalloc"]
# The least ratio each peer column should show; jemalloc has no goal.
TARGET = {"system": 1.0, "mimalloc": 0.95}
# The groups of benches/request_heap: their variants, the first the base of the ratios.
HEAP_GROUPS = ["request_heap", "heap_destroy"]
HEAP_VARIANTS = ["heap", "shardalloc", "mimalloc", "bumpalo"]


def collect(criterion_dirs):
    """{(group, param): {allocator: median ns}}, the least over the directories."""
    rows = {}
    for dirpath, _dirs, files in (w for d in criterion_dirs for w in os.walk(d)):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        alloc = meta.get("function_id")
        names = HEAP_VARIANTS if meta["group_id"] in HEAP_GROUPS else ALLOCATORS
        if alloc not in names:
            continue
        key = (meta["group_id"], meta.get("value_str") or "")
        ns = est["median"]["point_estimate"]
        times = rows.setdefault(key, {})
        times[alloc] = min(ns, times.get(alloc, ns))
    return rows


def param_order(param):
    """Sorts by the numbers in the parameter (sizes with their unit, thread counts), so
    8B < 64B < 1KiB and 48B-align8B < 48B-align16B."""
    key = []
    for num, unit in re.findall(r"(\d+)(KiB|MiB|B)?", param):
        key.append(int(num) * {"KiB": 1024, "MiB": 1024 * 1024}.get(unit, 1))
    return (key or [math.inf], param)


GROUP_ORDER = ["roundtrip_lone", "roundtrip_batch64", "roundtrip_aligned", "realloc_growth",
               "vec_growth", "string_growth", "map_churn", "binary_trees", "producer_consumer",
               "thread_churn", "large_block"]


def group_order(group):
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def fmt_time(ns):
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.2f us" % (ns / 1e3)
    return "%.0f ns" % ns


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def build(rows):
    """Returns the list of result records, sorted, each with times and ratios."""
    records = []
    for (group, param) in sorted(rows, key=lambda k: (group_order(k[0]), param_order(k[1]))):
        if group in HEAP_GROUPS:
            continue
        times = rows[(group, param)]
        if "shardalloc" not in times:
            continue
        ratios = {p: times[p] / times["shardalloc"] for p in PEERS if p in times}
        records.append({"group": group, "param": param, "median_ns": times, "ratio": ratios})
    return records


def markdown(records):
    out = []
    head = "| workload | " + " | ".join(ALLOCATORS) + " | vs system | vs mimalloc | vs jemalloc |"
    out.append(head)
    out.append("|---|" + "---:|" * (len(ALLOCATORS) + len(PEERS)))
    for r in records:
        cells = [fmt_time(r["median_ns"][a]) if a in r["median_ns"] else "-" for a in ALLOCATORS]
        for p in PEERS:
            ratio = r["ratio"].get(p)
            if ratio is None:
                cells.append("-")
                continue
            miss = p in TARGET and ratio < TARGET[p]
            cells.append(("**%.2f**" if miss else "%.2f") % ratio)
        out.append("| %s/%s | %s |" % (r["group"], r["param"], " | ".join(cells)))
    means = {p: geomean([r["ratio"].get(p) for r in records]) for p in PEERS}
    out.append("| geometric mean |" + " |" * len(ALLOCATORS) + " " +
               " | ".join("%.2f" % means[p] if means[p] else "-" for p in PEERS) + " |")
    misses = {p: sum(1 for r in records if p in TARGET and r["ratio"].get(p, 9) < TARGET[p])
              for p in PEERS}
    out.append("")
    out.append("Times: criterion's median time per iteration. Ratios: the peer's time divided by "
               "shardalloc's (above 1: shardalloc has the higher throughput). **Bold**: below the "
               "target (1.00 vs system, 0.95 vs mimalloc). %d of %d workloads below the system "
               "target, %d below the mimalloc target."
               % (misses["system"], len(records), misses["mimalloc"]))
    return "\n".join(out) + "\n", means


def heap_markdown(rows):
    """The table of the heap groups: each variant's time and its ratio to the heap's."""
    peers = HEAP_VARIANTS[1:]
    keys = sorted((k for k in rows if k[0] in HEAP_GROUPS),
                  key=lambda k: (HEAP_GROUPS.index(k[0]), param_order(k[1])))
    if not keys:
        return ""
    out = ["| workload | " + " | ".join(HEAP_VARIANTS) + " | " +
           " | ".join("%s / heap" % p for p in peers) + " |",
           "|---|" + "---:|" * (len(HEAP_VARIANTS) + len(peers))]
    for group, param in keys:
        times = rows[(group, param)]
        cells = [fmt_time(times[v]) if v in times else "-" for v in HEAP_VARIANTS]
        for p in peers:
            cells.append("%.2f" % (times[p] / times["heap"]) if p in times and "heap" in times
                         else "-")
        out.append("| %s/%s | %s |" % (group, param, " | ".join(cells)))
    out.append("")
    out.append("`shardalloc::Heap` (benches/request_heap): a request's objects built in a heap "
               "and dropped with it (`heap`), against the same objects freed one by one on the "
               "global allocators (`shardalloc`, `mimalloc`) and in a bumpalo arena reset after "
               "each request (`bumpalo`). Ratios: the variant's time divided by the heap's "
               "(above 1: the heap is faster).")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--criterion-dir", action="append",
                    help="criterion's output (default target/criterion); repeat to combine runs")
    ap.add_argument("--out-prefix", default=os.path.join(BENCH_DIR, "results", "criterion"),
                    help="writes PREFIX.md and PREFIX.json (default bench/results/criterion)")
    ap.add_argument("--note", default="", help="a line for the head of the Markdown file")
    args = ap.parse_args()
    dirs = args.criterion_dir or [os.path.join(REPO_ROOT, "target", "criterion")]
    rows = collect(dirs)
    if not rows:
        sys.exit("no criterion results under %s: run `cargo bench --bench allocators` first"
                 % ", ".join(dirs))
    records = build(rows)
    table, means = markdown(records)
    heap_table = heap_markdown(rows)
    print(table, end="")
    if heap_table:
        print("\n" + heap_table, end="")
    os.makedirs(os.path.dirname(os.path.abspath(args.out_prefix)), exist_ok=True)
    with open(args.out_prefix + ".md", "w") as f:
        f.write("# Criterion suite: shardalloc vs the system allocator, mimalloc, jemalloc\n\n")
        f.write("Command: `cargo bench --bench allocators`, then "
                "`python3 bench/criterion_table.py`%s.\n"
                % ("" if len(dirs) == 1 else
                   " (best of %d runs: each run's `target/criterion` copied aside and passed "
                   "with `--criterion-dir`)" % len(dirs)))
        f.write("\nWritten on: %s\n" % benchlib.machine_line(benchlib.machine_info()))
        if args.note:
            f.write("\n" + args.note + "\n")
        f.write("\n" + table)
        if heap_table:
            f.write("\n## Heaps: a request dropped with its heap\n\n" + heap_table)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"records": records, "geomean": means, "note": args.note}, f, indent=1)


if __name__ == "__main__":
    main()
