#!/usr/bin/env python3
"""Measures what secure mode costs: shardalloc built with SA_SECURE=1 against the default build,
with mimalloc 3's secure build (MI_SECURE=4) against its default build as the peer.

C bench programs (bench/c, bench/run_c_bench.py): the four libraries run in one invocation, so
every repetition runs each program under all of them one after the other (order rotating);
the ratios secure / default of the medians are taken per program, and their geometric mean.

Criterion suite (--criterion; benches/allocators.rs): `cargo bench --bench allocators` once
without and once with `--features secure`, one after the other. Each run also measures the
`mimalloc` crate, which is the same in both, so the secure/default ratio of shardalloc is also
given normalised by mimalloc's ratio between the two runs (cancelling a drift of the machine).

Builds what it needs: c_src/build/libshardalloc.so, c_src/build/secure/libshardalloc.so, and
bench/build/libmimalloc3.so and libmimalloc3-secure.so from the libmimalloc-sys crate's
bundled source (the same command as bench/README.md, plus -DMI_SECURE=4).

Usage: bench/secure_cost.py [--quick] [--reps R] [--criterion] [--criterion-quick] [--no-c]
                            [--reuse-c]
Results: bench/results/secure.md (and secure_c_bench.{md,json} from run_c_bench.py).
"""

import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
import benchlib  # noqa: E402
import criterion_table  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUILD = os.path.join(BENCH, "build")
LIBS = {
    "shardalloc": os.path.join(ROOT, "c_src", "build", "libshardalloc.so"),
    "shardalloc-secure": os.path.join(ROOT, "c_src", "build", "secure", "libshardalloc.so"),
    "mimalloc3": os.path.join(BUILD, "libmimalloc3.so"),
    "mimalloc3-secure": os.path.join(BUILD, "libmimalloc3-secure.so"),
}
PAIRS = [("shardalloc", "shardalloc-secure"), ("mimalloc3", "mimalloc3-secure")]
BOUND = 1.10  # secure at most 10 % slower (geometric mean)


def run(argv, **kw):
    print("+ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kw)


def build_libraries():
    run(["make", "-s", "-C", os.path.join(ROOT, "c_src"), "shared"])
    run(["make", "-s", "-C", os.path.join(ROOT, "c_src"), "shared", "SA_SECURE=1",
         "BUILD_DIR=build/secure"])
    srcs = sorted(glob.glob(os.path.expanduser(
        "~/.cargo/registry/src/*/libmimalloc-sys-*/c_src/mimalloc/v3")))
    if not srcs:
        sys.exit("no libmimalloc-sys source under ~/.cargo/registry (cargo fetch first)")
    m = srcs[-1]
    os.makedirs(BUILD, exist_ok=True)
    for name, extra in (("mimalloc3", []), ("mimalloc3-secure", ["-DMI_SECURE=4"])):
        if os.path.exists(LIBS[name]):
            continue
        run(["gcc", "-O3", "-DNDEBUG", "-fPIC", "-shared", "-ftls-model=initial-exec",
             "-fvisibility=hidden", "-DMI_MALLOC_OVERRIDE", "-DMI_SHARED_LIB",
             "-DMI_SHARED_LIB_EXPORT"] + extra +
            ["-I" + os.path.join(m, "include"), os.path.join(m, "src", "static.c"),
             "-o", LIBS[name], "-lpthread"])


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def c_bench(args):
    prefix = os.path.join(BENCH, "results", "secure_c_bench")
    argv = [sys.executable, os.path.join(BENCH, "run_c_bench.py"), "--alloc", "shardalloc",
            "--out-prefix", prefix]
    argv += ["--lib", "shardalloc=" + LIBS["shardalloc"]]
    for n in LIBS:
        if n != "shardalloc":
            argv += ["--lib", "%s=%s" % (n, LIBS[n])]
    if args.quick:
        argv.append("--quick")
    if args.reps:
        argv += ["--reps", str(args.reps)]
    if not args.reuse_c:
        run(argv)
    data = json.load(open(prefix + ".json"))
    med = data["medians"]
    lines = ["## C bench programs (bench/c)", "",
             "Run: " + benchlib.machine_line(data["machine"]), "",
             "Command: `%s` (%d repetition%s, medians). Ratio = secure / default time "
             "(above 1: secure is slower)." % (data["command"], data["reps"],
                                              "" if data["reps"] == 1 else "s"), ""]
    for key, title in (("own_s", "time the program measured itself"),
                       ("wall_s", "wall time of the process")):
        lines += ["### %s" % title, "",
                  "| program | shardalloc (s) | secure (s) | ratio | mimalloc3 (s) | "
                  "MI_SECURE=4 (s) | ratio |", "|---|---|---|---|---|---|---|"]
        ratios = {p: [] for p in PAIRS}
        for prog in med:
            cells = []
            for pair in PAIRS:
                d, s = (med[prog].get(n, {}).get(key) for n in pair)
                r = s / d if d and s else None
                ratios[pair].append(r)
                cells += ["%.3f" % d if d else "FAIL", "%.3f" % s if s else "FAIL",
                          "%.3f" % r if r else "-"]
            lines.append("| %s | %s |" % (prog, " | ".join(cells)))
        gms = [geomean(ratios[p]) for p in PAIRS]
        lines.append("| **geometric mean** | | | **%s** | | | **%s** |" % tuple(
            "%.3f" % g if g else "-" for g in gms))
        lines.append("")
        if key == "own_s":
            verdict = gms[0]
    return lines, verdict


def cargo_bench(features, quick, keep_dir):
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if quick:
        env["SHARDALLOC_BENCH_QUICK"] = "1"
    # criterion writes its results under CRITERION_HOME: one folder per run, nothing shared
    shutil.rmtree(keep_dir, ignore_errors=True)
    env["CRITERION_HOME"] = keep_dir
    run(["cargo", "bench", "--bench", "allocators"] + features, cwd=ROOT, env=env)
    return criterion_table.collect([keep_dir])


def criterion(args):
    tmp = os.path.join(BUILD, "criterion-secure")
    default = cargo_bench([], args.criterion_quick, tmp + "-default")
    secure = cargo_bench(["--features", "secure"], args.criterion_quick, tmp + "-secure")
    lines = ["## Criterion suite (benches/allocators.rs)", "",
             "Command: `cargo bench --bench allocators` then the same with `--features secure`%s. "
             "Ratio = secure / default median time; normalised: divided by the same ratio of the "
             "`mimalloc` crate (unchanged between the runs), which cancels a drift of the "
             "machine." % (" (SHARDALLOC_BENCH_QUICK=1)" if args.criterion_quick else ""), "",
             "| benchmark | default | secure | ratio | normalised |", "|---|---|---|---|---|"]
    raw, norm = [], []
    for key in sorted(default, key=lambda k: (k[0], criterion_table.param_order(k[1]))):
        d, s = default[key].get("shardalloc"), secure.get(key, {}).get("shardalloc")
        md, ms = default[key].get("mimalloc"), secure.get(key, {}).get("mimalloc")
        if not d or not s:
            continue
        r = s / d
        n = r / (ms / md) if md and ms else None
        raw.append(r)
        norm.append(n)
        lines.append("| %s/%s | %s | %s | %.3f | %s |" % (
            key[0], key[1], criterion_table.fmt_time(d), criterion_table.fmt_time(s), r,
            "%.3f" % n if n else "-"))
    g, gn = geomean(raw), geomean(norm)
    lines.append("| **geometric mean** | | | **%.3f** | **%s** |" % (g, "%.3f" % gn if gn else "-"))
    lines.append("")
    return lines, gn or g


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="C programs: quick arguments, 1 rep")
    ap.add_argument("--reps", type=int, help="C programs: repetitions (default 5)")
    ap.add_argument("--criterion", action="store_true", help="also run the criterion suite twice")
    ap.add_argument("--criterion-quick", action="store_true",
                    help="with --criterion: SHARDALLOC_BENCH_QUICK=1 (short measurements)")
    ap.add_argument("--no-c", action="store_true", help="skip the C bench programs")
    ap.add_argument("--reuse-c", action="store_true",
                    help="take the C programs' results of the last run (secure_c_bench.json)")
    args = ap.parse_args()

    build_libraries()
    machine = benchlib.machine_info()
    command = " ".join(["bench/secure_cost.py"] + sys.argv[1:])
    out = ["# Secure mode: what it costs", "",
           "Machine: " + benchlib.machine_line(machine),
           "Command: `%s`" % command,
           "Bound: secure at most %d %% slower than default (geometric mean of the ratios)." % (
               round((BOUND - 1) * 100)), ""]
    verdicts = []
    if not args.no_c:
        lines, v = c_bench(args)
        out += lines
        verdicts.append(("C bench programs (own time)", v))
    if args.criterion:
        lines, v = criterion(args)
        out += lines
        verdicts.append(("criterion suite", v))
    out += ["## Verdict", ""]
    for what, v in verdicts:
        out.append("- %s: shardalloc secure / default = %.3f: %s" % (
            what, v, "within the bound" if v <= BOUND else "OVER the bound"))
    text = "\n".join(out) + "\n"
    path = os.path.join(BENCH, "results", "secure.md")
    with open(path, "w") as f:
        f.write(text)
    print(text)
    print("wrote " + path)
    return 0 if all(v <= BOUND for _, v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
