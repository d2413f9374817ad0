#!/usr/bin/env python3
"""Memory benchmark: peak RSS, RSS after free (at once, after an idle pause, after the
allocator's own collect call) and minor page faults of the workloads in memwork.c, under each
allocator through LD_PRELOAD, in one run. Not a timed benchmark.

    bench/memory/run.py                 # 3 repetitions (medians), about 3 minutes
    bench/memory/run.py --quick         # 1 repetition, amounts / 8, 300 ms idle: about 20 s
    bench/memory/run.py --reps 1 --only large,threads --alloc glibc,shardalloc
    bench/memory/run.py --lib mimalloc3=bench/build/libmimalloc3.so
    bench/memory/run.py --lib shardalloc=/tmp/build/libshardalloc.so   # another shardalloc

Allocators: those of bench/benchlib.py but tcmalloc (glibc, jemalloc, mimalloc, shardalloc from
c_src/build/libshardalloc.so: `make -C c_src shared`), plus "shardalloc-nohk": shardalloc with
its housekeeper thread off (SHARDALLOC_BACKGROUND_PURGE=0). Each --lib NAME=PATH adds a library;
a known NAME (shardalloc, say) takes that library instead of the default path, and
shardalloc-nohk follows it. Writes bench/results/memory.md and memory.json.
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

WORKLOADS = ["small", "mixed", "prodcons", "large", "threads", "crossidle"]
BINARY = os.path.join(benchlib.REPO_ROOT, "target", "memwork", "memwork")
NOHK = "shardalloc-nohk"
QUICK_DIVISOR = 8  # --quick divides memwork's amounts by this
KEYS = ("peak", "freed", "idle", "collect", "minflt", "time")


def field_titles(idle_ms):
    return [("peak", "Peak RSS (MiB)"),
            ("freed", "RSS right after the last free (MiB)"),
            ("idle", "RSS after %g s idle (MiB)" % (idle_ms / 1000)),
            ("collect", "RSS after the allocator's collect call (MiB)"),
            ("minflt", "Minor page faults")]


def build():
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-pthread", os.path.join(HERE, "memwork.c"),
           "-o", BINARY, "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("building memwork failed:\n" + proc.stderr)


def run_one(workload, alloc, idle_ms, divisor):
    env = benchlib.alloc_env(alloc)
    proc = subprocess.run([BINARY, workload, str(idle_ms), str(divisor)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("%s under %s failed:\n%s" % (workload, alloc["name"], proc.stderr))
    fields = dict(kv.split("=", 1) for kv in proc.stdout.split())
    out = {k: float(fields[k]) for k in KEYS}
    out["collect_fn"] = fields["collect_fn"]
    return out


def select(args):
    """The allocators to run: benchlib's (tcmalloc only when asked for), and shardalloc-nohk
    next to shardalloc, from the same library."""
    names = args.alloc.split(",") if args.alloc else None
    base = ["glibc", "jemalloc", "mimalloc", "shardalloc"]
    wanted = names or base + [NOHK]
    lib_names = {spec.split("=", 1)[0] for spec in args.lib}
    plain = [n for n in wanted if n != NOHK]
    need_shard = NOHK in wanted and "shardalloc" not in plain
    allocs, notes = benchlib.select_allocators(
        plain + ["shardalloc"] if need_shard else plain, args.lib)
    shard = [a for a in allocs if a["name"] == "shardalloc"]
    if shard and NOHK in wanted:
        benchlib.add_variants(allocs, [NOHK + "=shardalloc,SHARDALLOC_BACKGROUND_PURGE=0"])
    if shard and "shardalloc" not in plain and "shardalloc" not in lib_names:
        allocs.remove(shard[0])  # only there for shardalloc-nohk
    return allocs, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 repetition, amounts divided by %d, %d ms idle (for CI)"
                    % (QUICK_DIVISOR, 300))
    ap.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    ap.add_argument("--only", help="comma-separated workloads (%s)" % ",".join(WORKLOADS))
    ap.add_argument("--idle-ms", type=int,
                    help="idle pause before the 'idle' reading (default 1000, 300 with --quick)")
    benchlib.add_common_args(ap, "memory")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    idle_ms = args.idle_ms if args.idle_ms is not None else (300 if args.quick else 1000)
    divisor = QUICK_DIVISOR if args.quick else 1

    workloads = args.only.split(",") if args.only else WORKLOADS
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        sys.exit("unknown workload(s): %s" % ", ".join(sorted(unknown)))
    allocs, notes = select(args)
    for note in notes:
        print(note, file=sys.stderr)
    if not allocs:
        sys.exit("no allocator to run")
    build()
    info = benchlib.machine_info()  # now: the commit next to the libraries' build

    runs = {w: {a["name"]: [] for a in allocs} for w in workloads}
    for rep in range(reps):
        for w in workloads:
            order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]
            for a in order:
                runs[w][a["name"]].append(run_one(w, a, idle_ms, divisor))
        print("repetition %d/%d done" % (rep + 1, reps), file=sys.stderr)

    cmd = "bench/memory/run.py" + "".join(" " + a for a in sys.argv[1:])
    lines = ["Machine: %s." % benchlib.machine_line(info),
             "Allocators: %s%s." % (
                 benchlib.versions_line([a for a in allocs if a["name"] != NOHK]),
                 "".join("; %s is shardalloc %s with SHARDALLOC_BACKGROUND_PURGE=0 (no "
                         "housekeeper)" % (NOHK, a["version"] or "?")
                         for a in allocs if a["name"] == NOHK)),
             "Command: `%s` (medians of %d runs; amounts / %d; idle pause %d ms; collect call "
             "from the main thread: malloc_trim(0), mallctl(\"arena.4096.purge\"), "
             "mi_collect(true))." % (cmd, reps, divisor, idle_ms), ""]
    for key, title in field_titles(idle_ms):
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
        json.dump({"machine": info, "command": cmd, "reps": reps, "divisor": divisor,
                   "idle_ms": idle_ms, "allocators": allocs, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
