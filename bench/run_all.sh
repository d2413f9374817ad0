#!/usr/bin/env bash
# Every table of bench/results in one run, against the same peers: instruction counts, latency,
# the criterion suite, the C programs, memory, then the chart. Each script writes its own
# results with the commit, date, machine and command; this one adds a log of the whole run
# (bench/results/run_all.log). About 40 minutes on 2 cores; run it on a quiet machine.
#
# usage: bench/run_all.sh [--quick]   (--quick: each script's quick mode, results in a
#                                      temporary folder, for trying the pipeline)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
results=bench/results
if [[ ${1:-} == --quick ]]; then
  quick=(--quick)
  results=$(mktemp -d)
fi

m3=bench/build/libmimalloc3.so
peers=()
if [[ -f $m3 ]]; then
  peers=(--lib "mimalloc3=$m3")
else
  echo "note: $m3 missing (bench/README.md shows how to build it): mimalloc 3 left out" >&2
fi

log="$results/run_all.log"
mkdir -p "$results"
# the tree's state before this run writes its log (a tracked file) and the tables
changes=$(git diff --quiet -- . ":(exclude)$results" || echo ' (with local changes)')
echo "bench/run_all.sh ${quick[*]}: commit $(git rev-parse --short HEAD)$changes, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" |
  tee "$log"

step() {
  echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log" | tail -n 3
}

make -C c_src shared -j"$(nproc)" >/dev/null
step python3 bench/callgrind_fastpath.py "${peers[@]}" ${quick:+--n 2000} --out-prefix "$results/fastpath"
# the callgrind step runs its cases in parallel: wait (up to 3 minutes) for the 1-minute load
# average to fall under 0.5 before timing anything
settle() {
  local waited=0
  while awk '{exit !($1 >= 0.5)}' /proc/loadavg && ((waited < 180)); do
    sleep 10
    waited=$((waited + 10))
  done
  echo "   (load $(cut -d' ' -f1 /proc/loadavg) after waiting ${waited} s)" | tee -a "$log"
}
[[ -z ${quick[*]} ]] && settle
# latency and criterion before the programs that take gigabytes (large_blocks, the memory
# benchmark): the tail of the latency and the first criterion workloads depend on the machine's
# state, which those change for a while after they exit (what the kernel has free, huge pages
# above all: right after the memory benchmark, criterion's first group ran 10-60 % slower for
# every allocator than on a quiet machine, shardalloc's roundtrip_lone/8B 280 ns against 146-162)
step python3 bench/latency.py "${quick[@]}" "${peers[@]}" --out-prefix "$results/latency"
# the same after a pause, where the host has taken back the memory the last run freed
[[ -z ${quick[*]} ]] && step python3 bench/latency.py --no-prime --no-detail "${peers[@]}" \
  --out-prefix "$results/latency_cold"
if [[ -z ${quick[*]} ]]; then
  cargo bench --bench allocators --no-run >/dev/null 2>&1 # the build apart from the timing
  step cargo bench --bench allocators
  step python3 bench/criterion_table.py --criterion-dir target/criterion --out-prefix "$results/criterion"
fi
step python3 bench/run_c_bench.py "${quick[@]}" --warmup "${peers[@]}" --out-prefix "$results/c_bench"
# the option that puts huge pages on all of shardalloc's memory, against the default
thp_reps=(--reps 3)
[[ -n ${quick[*]} ]] && thp_reps=()
step python3 bench/run_c_bench.py "${quick[@]}" "${thp_reps[@]}" --warmup --alloc glibc,shardalloc \
  "${peers[@]}" --variant shardalloc-thp=shardalloc,SHARDALLOC_ALLOW_LARGE_OS_PAGES=1 \
  --out-prefix "$results/c_bench_thp"
step python3 bench/memory/run.py "${quick[@]}" "${peers[@]}" --out-prefix "$results/memory"
step python3 bench/chart.py --results "$results" --out "$results/benchmarks.svg"
echo "done $(date -u '+%Y-%m-%d %H:%M UTC'); results in $results" | tee -a "$log"
