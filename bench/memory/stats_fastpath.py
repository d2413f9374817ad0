#!/usr/bin/env python3
"""Shows that no statistics code runs per malloc+free pair in the C library.

Runs bench/build/fastpath (make -C bench/c) under callgrind with N and 2N iterations, with
c_src/build/libshardalloc.so preloaded (make -C c_src shared; built with -g), and lists, per
case, every function and every source line of the library whose instruction count grows with
N: that is the per-pair work. The check fails (exit 1) if a function of stats.c, or a source
line that updates a counter (`_stat_`, `stats`, `count_used`), runs at least once every two
pairs; counters on slow-path events (a page filling up: about 0.002 per pair in `live`) are
listed with their rate.

    bench/memory/stats_fastpath.py [N=100000]
Standard library only; needs valgrind.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(ROOT, "c_src", "build", "libshardalloc.so")
PROG = os.path.join(ROOT, "bench", "build", "fastpath")
CASES = [("held", "16"), ("lone", "16"), ("live", "128"), ("cycle", "16"), ("held", "a64")]


def profile(case, size, n, tmp):
    out = os.path.join(tmp, "cg.%s.%s.%d" % (case, size, n))
    env = dict(os.environ, LD_PRELOAD=LIB)
    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, PROG, case,
                    size, str(n)], env=env, check=True, capture_output=True)
    text = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=yes",
                           "--show-percs=no", "--context=0", out],
                          capture_output=True, text=True, check=True).stdout
    funcs, lines = {}, {}
    src = None
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(\S+\.[ch]):(\S+) \[(.*)\]$", line)
        if m and m.group(4) == LIB:
            funcs["%s:%s" % (os.path.basename(m.group(2)), m.group(3))] = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"^-- Auto-annotated source: (.*)$", line)
        if m:
            src = os.path.basename(m.group(1).strip())
            continue
        m = re.match(r"^\s*([\d,]+)\s+(.*)$", line)
        if m and src and src.endswith((".c", ".h")) and "/c_src/" not in m.group(2):
            key = "%s: %s" % (src, m.group(2).strip())
            lines[key] = lines.get(key, 0) + int(m.group(1).replace(",", ""))
    return funcs, lines


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    for path, how in ((LIB, "make -C c_src shared"), (PROG, "make -C bench/c")):
        if not os.path.exists(path):
            sys.exit("%s is missing: %s" % (path, how))
    bad = False
    with tempfile.TemporaryDirectory() as tmp:
        for case, size in CASES:
            f1, l1 = profile(case, size, n, tmp)
            f2, l2 = profile(case, size, 2 * n, tmp)
            grow = {k: (f2[k] - f1.get(k, 0)) / n for k in f2 if f2[k] != f1.get(k, 0)}
            lgrow = {k: (l2[k] - l1.get(k, 0)) / n for k in l2 if l2[k] != l1.get(k, 0)}
            total = sum(grow.values())
            print("%s %s: %.1f instructions per pair in the library, in: %s" % (
                case, size, total,
                ", ".join("%s %.1f" % (k, v) for k, v in sorted(grow.items(), key=lambda kv: -kv[1]))))
            stats = {k: v for k, v in grow.items() if k.startswith("stats.c")}
            stats.update({k: v for k, v in lgrow.items()
                          if re.search(r"_stat_|\bstats?\b|count_used", k.split(": ", 1)[1])})
            per_pair = {k: v for k, v in stats.items() if v >= 0.5}
            if per_pair:
                bad = True
                print("  statistics code per pair: %s" % per_pair)
            else:
                print("  %d source lines run per pair; statistics code: %s" % (
                    len([v for v in lgrow.values() if v >= 0.5]),
                    "none" if not stats else ", ".join(
                        "%s (%.3f per pair: slow-path events)" % (k, v) for k, v in stats.items())))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
