#!/usr/bin/env python3
"""Where secure mode's time goes, per workload: the criterion workloads it costs most on
(bench/secure/workloads.c mirrors them in C) run against libshardalloc.so builds, with

  - CPU time per iteration (user + system of the process: steadier than wall time on a shared
    machine, and it counts the kernel's work of system calls and page faults),
  - system calls per iteration (strace -c -f: mprotect, mincore, madvise),
  - page faults per iteration (perf stat -e page-faults; without perf: getrusage's minflt),
  - instructions per block (callgrind, the run at 2N iterations minus the run at N), for the
    small-block workloads only (deterministic, but the kernel's work is not in it).

usage: bench/secure/profile.py --lib NAME=PATH [--lib NAME=PATH ...] [--out FILE]
e.g.   bench/secure/profile.py --lib default=c_src/build/libshardalloc.so \\
           --lib secure=c_src/build/secure/libshardalloc.so
Writes a Markdown table (default bench/results/secure_profile.md). Standard library only.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchlib  # noqa: E402

PAIRS = 64  # blocks per iteration of lone and batch (workloads.c)

# name, argv after the program, iterations (time, strace, faults), callgrind N (0: none)
WORKLOADS = [
    ("roundtrip_lone/1MiB", ["lone", "1048576"], 200, 0),
    ("roundtrip_batch64/1MiB", ["batch", "1048576", "0"], 20, 0),
    ("roundtrip_lone/256KiB", ["lone", "262144"], 200, 0),
    ("roundtrip_batch64/256KiB", ["batch", "262144", "0"], 30, 0),
    ("roundtrip_lone/64KiB", ["lone", "65536"], 300, 0),
    ("roundtrip_batch64/64KiB", ["batch", "65536", "0"], 200, 0),
    ("large_block/1MiB", ["large", "1048576"], 300, 0),
    ("large_block/16MiB", ["large", "16777216"], 30, 0),
    ("large_block/64MiB", ["large", "67108864"], 8, 0),
    ("roundtrip_aligned/4KiB-align4KiB", ["batch", "4096", "4096"], 3000, 100),
    ("roundtrip_batch64/1KiB", ["batch", "1024", "0"], 5000, 200),
    ("roundtrip_aligned/48B-align64B", ["batch", "48", "64"], 5000, 200),
    ("roundtrip_batch64/16B", ["batch", "16", "0"], 5000, 200),
]
SYSCALLS = ("mprotect", "mincore", "madvise")


def build_workloads():
    out = os.path.join(benchlib.BUILD_DIR, "secure_workloads")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workloads.c")
    os.makedirs(benchlib.BUILD_DIR, exist_ok=True)
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-o", out, src], check=True)
    return out


def env_with(lib):
    env = dict(os.environ)
    env["LD_PRELOAD"] = os.path.abspath(lib)
    return env


def cpu_us(prog, lib, argv, iters):
    out = subprocess.run([prog] + argv + [str(iters)], env=env_with(lib), check=True,
                         capture_output=True, text=True).stdout
    return float(re.search(r"([0-9.]+) us CPU per iteration", out).group(1))


def syscalls(prog, lib, argv, iters):
    """Calls per iteration of each of SYSCALLS (the start-up's subtracted: a run of 0)."""
    def count(n):
        r = subprocess.run(["strace", "-f", "-c", "-E", "LD_PRELOAD=" + os.path.abspath(lib),
                            prog] + argv + [str(n)], capture_output=True, text=True)
        calls = {}
        for line in r.stderr.splitlines():
            f = line.split()
            if len(f) >= 5 and f[-1] in SYSCALLS:
                calls[f[-1]] = int(f[3])
        return calls
    base, full = count(0), count(iters)
    return {s: (full.get(s, 0) - base.get(s, 0)) / iters for s in SYSCALLS}


def faults(prog, lib, argv, iters):
    def count(n):
        if shutil.which("perf"):
            r = subprocess.run(["perf", "stat", "-x,", "-e", "page-faults", prog] + argv +
                               [str(n)], env=env_with(lib), capture_output=True, text=True)
            m = re.search(r"^([0-9]+),,page-faults", r.stderr, re.M)
            if m:
                return int(m.group(1))
        code = ("import resource,subprocess,sys;subprocess.run(sys.argv[1:]);"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt)")
        r = subprocess.run([sys.executable, "-c", code, prog] + argv + [str(n)],
                           env=env_with(lib), capture_output=True, text=True)
        return int(r.stdout.split()[-1])
    return (count(iters) - count(0)) / iters


def instructions(prog, lib, argv, n):
    def total(k):
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            prog] + argv + [str(k)], env=env_with(lib),
                           capture_output=True, text=True)
        return int(re.findall(r"Collected : ([0-9]+)", r.stderr)[-1])
    return (total(2 * n) - total(n)) / (PAIRS * n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS_DIR, "secure_profile.md"))
    ap.add_argument("--no-callgrind", action="store_true")
    args = ap.parse_args()
    libs = [tuple(x.split("=", 1)) for x in args.lib]
    prog = build_workloads()
    have_strace = shutil.which("strace") is not None
    have_valgrind = shutil.which("valgrind") is not None and not args.no_callgrind
    rows = []
    for name, argv, iters, cg in WORKLOADS:
        for lib_name, lib in libs:
            t = cpu_us(prog, lib, argv, iters)
            sc = syscalls(prog, lib, argv, iters) if have_strace else {}
            pf = faults(prog, lib, argv, iters)
            ins = instructions(prog, lib, argv, cg) if cg and have_valgrind else None
            rows.append((name, lib_name, t, sc, pf, ins))
            print(f"{name:36} {lib_name:16} {t:10.2f} us  " +
                  " ".join(f"{s} {sc.get(s, 0):.1f}" for s in SYSCALLS) +
                  f"  faults {pf:.1f}" + (f"  {ins:.0f} instr/block" if ins else ""),
                  flush=True)
    info = benchlib.machine_info()
    with open(args.out, "w") as f:
        f.write("# Secure mode: where the time goes\n\n")
        f.write(f"Machine: {benchlib.machine_line(info)}\n")
        f.write(f"Command: `bench/secure/profile.py {' '.join('--lib ' + x for x in args.lib)}`"
                "\n\n")
        f.write("Workloads of `bench/secure/workloads.c`, named after the criterion benchmark "
                "each mirrors. Per iteration (64 blocks for roundtrip_*, one block for "
                "large_block): CPU time (user + system, one run), system calls (strace -c), "
                "page faults (perf stat); instructions per block from callgrind (user space "
                "only) for the small-block workloads.\n\n")
        f.write("| workload | library | CPU us/iter | mprotect | mincore | madvise | faults | "
                "instr/block |\n|---|---|---|---|---|---|---|---|\n")
        for name, lib_name, t, sc, pf, ins in rows:
            f.write(f"| {name} | {lib_name} | {t:.2f} | " +
                    " | ".join(f"{sc.get(s, 0):.1f}" if sc else "-" for s in SYSCALLS) +
                    f" | {pf:.1f} | {'' if ins is None else f'{ins:.0f}'} |\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
