#!/usr/bin/env bash
# Smoke test of the benchmark scripts (CI): each one answers --help, and runs its quickest mode
# on glibc and shardalloc with its results written to a temporary folder (bench/results is
# left alone). Checks that the scripts work, not what they measure. About a minute.
# Needs gcc, make and valgrind (callgrind_fastpath.py).
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

scripts=(bench/callgrind_fastpath.py bench/run_c_bench.py bench/memory/run.py bench/latency.py
  bench/criterion_table.py bench/chart.py bench/crossfree_profile.py)
for script in "${scripts[@]}"; do
  python3 "$script" --help >/dev/null
done

make -C c_src shared -j2 >/dev/null
allocs=glibc,shardalloc
python3 bench/callgrind_fastpath.py --n 2000 --alloc "$allocs" --out-prefix "$out/fastpath"
python3 bench/run_c_bench.py --quick --alloc "$allocs" --out-prefix "$out/c_bench"
python3 bench/memory/run.py --quick --only small,threads --alloc "$allocs" --out-prefix "$out/memory"
python3 bench/latency.py --quick --no-detail --ops 20000 --alloc "$allocs" --out-prefix "$out/latency"
python3 bench/crossfree_profile.py --reps 1 --rounds 1 --alloc "$allocs" --out-prefix "$out/crossfree" >/dev/null

# criterion_table.py reads criterion's output; a two-entry one stands in for a `cargo bench` run.
for alloc in shardalloc system; do
  dir="$out/criterion/alloc_free/$alloc/64B/new"
  mkdir -p "$dir"
  printf '{"group_id": "alloc_free", "function_id": "%s", "value_str": "64B"}\n' "$alloc" \
    >"$dir/benchmark.json"
  printf '{"median": {"point_estimate": %s}}\n' "$([[ $alloc == system ]] && echo 12.0 || echo 10.0)" \
    >"$dir/estimates.json"
done
python3 bench/criterion_table.py --criterion-dir "$out/criterion" --out-prefix "$out/criterion"
grep -q '1.20' "$out/criterion.md" || { echo "criterion_table.py: no 1.20 ratio" >&2; exit 1; }

python3 bench/chart.py --results "$out" --out "$out/chart.svg"
for f in fastpath c_bench memory latency criterion crossfree; do
  test -s "$out/$f.json" && test -s "$out/$f.md"
done
test -s "$out/chart.svg"
echo "bench scripts: ok"
