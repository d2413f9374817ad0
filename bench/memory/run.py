#!/usr/bin/env python3
"""Memory benchmark: peak RSS, RSS after free (at once, after an idle pause, after the
allocator's own collect call) and minor page faults of the workloads in memwork.c, under each
allocator through LD_PRELOAD, in one run. Not a timed benchmark.

    bench/memory/run.py                 # 3 repetitions (medians), about 1 minute
    bench/memory/run.py --reps 1 --only large,threads --alloc glibc,shardalloc

Allocators: those of bench/benchlib.py but tcmalloc (glibc, jemalloc, mimalloc, shardalloc from
c_src/build/libshardalloc.so: `make -C c_src shared`), plus "shardalloc+bg": shardalloc with
SHARDALLOC_BACKGROUND_PURGE=1. Writes bench/results/memory.md and memory.json.
Standard library only; needs gcc.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib  # noqa: E402

WORKLOADS = ["small", "mixed", "prodcons", "large", "threads"]
BINARY = os.path.join(benchlib.REPO_ROOT, "target", "memwork", "memwork")
FIELDS = [("peak", "Peak RSS (MiB)"), ("freed", "RSS right after the last free (MiB)"),
          ("idle", "RSS after 1 s idle (MiB)"), ("collect", "RSS after the allocator's collect "
                                                            "call (MiB)"),
          ("minflt", "Minor page faults")]


def build():
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-pthread", os.path.join(HERE, "memwork.c"),
           "-o", BINARY, "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("building memwork failed:\n" + proc.stderr)


def run_one(workload, alloc, idle_ms):
    env = benchlib.preload_env(alloc["path"])
    env.update(alloc.get("env", {}))
    proc = subprocess.run([BINARY, workload, str(idle_ms)], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit("%s under %s failed:\n%s" % (workload, alloc["name"], proc.stderr))
    fields = dict(kv.split("=", 1) for kv in proc.stdout.split())
    return {k: (fields[k] if k == "collect_fn" else float(fields[k]))
            for k in ("peak", "freed", "idle", "collect", "collect_fn", "minflt", "time")}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", help="comma-separated workloads")
    ap.add_argument("--alloc", help="comma-separated allocators (glibc,jemalloc,mimalloc,"
                                    "shardalloc,shardalloc+bg)")
    ap.add_argument("--idle-ms", type=int, default=1000)
    ap.add_argument("--out-prefix", default=os.path.join(benchlib.RESULTS_DIR, "memory"))
    args = ap.parse_args()

    workloads = args.only.split(",") if args.only else WORKLOADS
    names = args.alloc.split(",") if args.alloc else None
    base_names = ["glibc", "jemalloc", "mimalloc", "shardalloc"]
    allocs, notes = benchlib.select_allocators(
        [n for n in (names or base_names) if n != "shardalloc+bg"] or None)
    for note in notes:
        print(note, file=sys.stderr)
    shard = [a for a in allocs if a["name"] == "shardalloc"]
    if shard and (names is None or "shardalloc+bg" in names):
        allocs.append(dict(shard[0], name="shardalloc+bg",
                           env={"SHARDALLOC_BACKGROUND_PURGE": "1"}))
    if names and "shardalloc" not in names:
        allocs = [a for a in allocs if a["name"] != "shardalloc"]
    build()

    runs = {w: {a["name"]: [] for a in allocs} for w in workloads}
    for rep in range(args.reps):
        for w in workloads:
            order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]
            for a in order:
                runs[w][a["name"]].append(run_one(w, a, args.idle_ms))
        print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)

    info = benchlib.machine_info()
    cmd = "bench/memory/run.py" + "".join(" " + a for a in sys.argv[1:])
    lines = ["Machine: %s." % benchlib.machine_line(info),
             "Allocators: %s; shardalloc+bg is shardalloc with SHARDALLOC_BACKGROUND_PURGE=1."
             % benchlib.versions_line([a for a in allocs if a["name"] != "shardalloc+bg"]),
             "Command: `%s` (medians of %d runs; idle pause %d ms; collect call: "
             "malloc_trim(0), mallctl(\"arena.4096.purge\"), mi_collect(true))."
             % (cmd, args.reps, args.idle_ms), ""]
    for key, title in FIELDS:
        lines.append("%s:" % title)
        lines.append("")
        lines.append("| workload | " + " | ".join(a["name"] for a in allocs) + " |")
        lines.append("|---|" + "---:|" * len(allocs))
        for w in workloads:
            cells = []
            for a in allocs:
                v = statistics.median(r[key] for r in runs[w][a["name"]])
                cells.append("%d" % v if key == "minflt" else "%.1f" % (v / 1024))
            lines.append("| %s | %s |" % (w, " | ".join(cells)))
        lines.append("")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out_prefix), exist_ok=True)
    with open(args.out_prefix + ".md", "w") as f:
        f.write(text)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump({"machine": info, "command": cmd, "allocators": allocs, "runs": runs}, f,
                  indent=1)


if __name__ == "__main__":
    main()
