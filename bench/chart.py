#!/usr/bin/env python3
"""Renders the benchmark results as one SVG chart (hand-written SVG, standard library only).

    python3 bench/chart.py                  # -> bench/results/benchmarks.svg
    python3 bench/chart.py --out PATH

Reads, from bench/results/ (each panel is left out when its file is missing):
- criterion.json (bench/criterion_table.py): shardalloc's throughput relative to the system
  allocator, mimalloc and jemalloc, per criterion workload (log scale; above 1: shardalloc
  faster);
- c_bench.json (bench/run_c_bench.py): each allocator's wall time and peak RSS per C program,
  relative to glibc (log scale; below 1: better than glibc);
- fastpath.json (bench/callgrind_fastpath.py): instructions per malloc+free pair.
"""

import argparse
import json
import math
import os
from xml.sax.saxutils import escape

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(BENCH_DIR, "results")

WIDTH = 980
LABEL_W = 270          # room for the row labels
PLOT_W = WIDTH - LABEL_W - 70
BAR_H = 5
ROW_GAP = 5
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"

COLORS = {
    "shardalloc": "#d62728", "system": "#7f7f7f", "glibc": "#7f7f7f", "mimalloc": "#1f77b4",
    "jemalloc": "#2ca02c", "tcmalloc": "#9467bd",
}
EXTRA_COLORS = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def color(name, i):
    name = name[3:] if name.startswith("vs ") else name
    return COLORS.get(name, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def text(x, y, s, size=11, anchor="start", weight="normal", fill="#222"):
    return ("<text x='%.1f' y='%.1f' font-size='%d' text-anchor='%s' font-weight='%s' "
            "fill='%s' %s>%s</text>" % (x, y, size, anchor, weight, fill, FONT, escape(str(s))))


def panel(title, subtitle, rows, series, values, scale, lo, hi, refs, y0, fmt="%.2f"):
    """Horizontal grouped bars. rows: labels; series: names; values[row][series]: number or
    None; scale: 'log' or 'linear' over [lo, hi] (bars clipped there, marked with '>');
    refs: [(value, label)] vertical reference lines. Returns (svg parts, height)."""
    out = []
    y = y0
    out.append(text(10, y + 16, title, size=15, weight="bold"))
    y += 22
    out.append(text(10, y + 12, subtitle, size=11, fill="#555"))
    y += 22
    # Legend.
    x = LABEL_W
    for i, s in enumerate(series):
        out.append("<rect x='%.1f' y='%.1f' width='12' height='10' fill='%s'/>"
                   % (x, y, color(s, i)))
        out.append(text(x + 16, y + 9, s, size=11))
        x += 26 + 7 * len(s)
    y += 20
    group_h = len(series) * BAR_H + ROW_GAP + 4
    plot_top = y
    plot_h = group_h * len(rows)

    def pos(v):
        if scale == "log":
            f = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        else:
            f = (v - lo) / (hi - lo)
        return LABEL_W + max(0.0, min(1.0, f)) * PLOT_W

    # Grid and axis labels.
    if scale == "log":
        ticks = []
        t = lo
        while t <= hi * 1.0001:
            ticks.append(t)
            t *= 2
    else:
        step = (hi - lo) / 6
        ticks = [lo + k * step for k in range(7)]
    for t in ticks:
        x = pos(t)
        out.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#e4e4e4'/>"
                   % (x, plot_top, x, plot_top + plot_h))
        label = ("%g" % t) if scale == "log" else ("%.0f" % t)
        out.append(text(x, plot_top + plot_h + 13, label, size=10, anchor="middle", fill="#555"))
    for v, label in refs:
        x = pos(v)
        out.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#000' "
                   "stroke-dasharray='4,3' stroke-width='1'/>" % (x, plot_top - 4, x,
                                                                   plot_top + plot_h))
        out.append(text(x + 3, plot_top - 6, label, size=9, fill="#000"))
    base = pos(1.0) if scale == "log" else pos(lo)
    for r, label in enumerate(rows):
        gy = plot_top + r * group_h
        if r % 2 == 0:
            out.append("<rect x='0' y='%.1f' width='%d' height='%d' fill='#f7f7f7'/>"
                       % (gy, WIDTH, group_h))
        out.append(text(LABEL_W - 8, gy + group_h / 2 + 4, label, size=10, anchor="end"))
        for i, s in enumerate(series):
            v = values[r][i]
            if v is None or v <= 0:
                continue
            x = pos(v)
            by = gy + 2 + i * BAR_H
            left, right = min(base, x), max(base, x)
            title_s = "%s, %s: %s" % (label, s, fmt % v)
            out.append("<rect x='%.1f' y='%.1f' width='%.1f' height='%d' fill='%s'>"
                       "<title>%s</title></rect>"
                       % (left, by, max(right - left, 1), BAR_H - 1, color(s, i),
                          escape(title_s)))
            if v > hi or v < lo:  # clipped: print the value beside the clipped end
                out.append(text(x + 4 if v > hi else x + 2, by + BAR_H, fmt % v, size=8,
                                fill="#000"))
    height = plot_top + plot_h + 30 - y0
    return out, height


def criterion_panel(y0):
    path = os.path.join(RESULTS, "criterion.json")
    if not os.path.exists(path):
        return [], 0
    with open(path) as f:
        data = json.load(f)
    peers = ["system", "mimalloc", "jemalloc"]
    rows, values = [], []
    for r in data["records"]:
        rows.append("%s/%s" % (r["group"], r["param"]))
        values.append([r["ratio"].get(p) for p in peers])
    g = data.get("geomean", {})
    rows.append("geometric mean")
    values.append([g.get(p) for p in peers])
    return panel(
        "Criterion suite (Rust, GlobalAlloc and allocator-generic collections)",
        "shardalloc's throughput relative to each peer: peer time / shardalloc time; "
        "right of 1 = shardalloc faster (log scale)",
        rows, ["vs " + p for p in peers], values, "log", 1 / 16, 16,
        [(1.0, "1.0"), (0.95, "")], y0)


def c_panels(y0):
    path = os.path.join(RESULTS, "c_bench.json")
    if not os.path.exists(path):
        return [], 0
    with open(path) as f:
        data = json.load(f)
    allocs = [a["name"] for a in data["allocators"] if a["name"] != "glibc"]
    programs = list(data["medians"])
    parts, total = [], 0
    for key, title in (("wall_s", "wall time"), ("maxrss_mib", "peak RSS")):
        rows, values = [], []
        logs = {a: [] for a in allocs}
        for prog in programs:
            m = data["medians"][prog]
            base = m.get("glibc", {}).get(key)
            row = []
            for a in allocs:
                v = m.get(a, {}).get(key)
                ratio = v / base if v and base else None
                row.append(ratio)
                if ratio:
                    logs[a].append(math.log(ratio))
            rows.append(prog)
            values.append(row)
        rows.append("geometric mean")
        values.append([math.exp(sum(logs[a]) / len(logs[a])) if logs[a] else None
                       for a in allocs])
        p, h = panel(
            "C programs through LD_PRELOAD: %s relative to glibc" % title,
            "median of %s runs; left of 1 = better than glibc (log scale)" % data.get("reps", "?"),
            rows, allocs, values, "log", 1 / 16, 16, [(1.0, "glibc")], y0 + total)
        parts += p
        total += h
    return parts, total


def fastpath_panel(y0):
    path = os.path.join(RESULTS, "fastpath.json")
    if not os.path.exists(path):
        return [], 0
    with open(path) as f:
        data = json.load(f)
    allocs = [a["name"] for a in data["allocators"]]
    cases = []
    cell = {}
    for r in data["results"]:
        size = r["size"]
        label = "%s %s" % (r["mode"], ("aligned 64 B" if size == "a64" else
                                       ("16/32/128/1024 B" if r["mode"] == "cycle" else
                                        size + " B")))
        if label not in cases:
            cases.append(label)
        cell[(label, r["allocator"])] = r["per_pair"]
    values = [[cell.get((c, a)) for a in allocs] for c in cases]
    top = max([v for row in values for v in row if v] + [1])
    hi = min(top, 200.0)
    hi = math.ceil(hi / 25.0) * 25
    refs = []
    glibc = [cell[(c, "glibc")] for c in cases if cell.get((c, "glibc"))]
    if glibc:  # the goal: at most a third of glibc's instructions
        refs.append((min(glibc) / 3, "glibc/3"))
    return panel(
        "Fast path: instructions per malloc+free pair (callgrind, through LD_PRELOAD)",
        "fewer is better; bars past %d are clipped and labelled" % hi,
        cases, allocs, values, "linear", 0, hi, refs, y0, fmt="%.0f")


def main():
    global RESULTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=RESULTS, help="where the .json files are")
    ap.add_argument("--out", default=os.path.join(RESULTS, "benchmarks.svg"))
    args = ap.parse_args()
    RESULTS = args.results
    parts, y = [], 10
    for make in (criterion_panel, c_panels, fastpath_panel):
        p, h = make(y)
        parts += p
        y += h + (10 if h else 0)
    if not parts:
        raise SystemExit("no results in %s: run the benchmark scripts first" % RESULTS)
    svg = ["<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d'>"
           % (WIDTH, y, WIDTH, y),
           "<rect width='100%' height='100%' fill='white'/>"] + parts + ["</svg>"]
    with open(args.out, "w") as f:
        f.write("\n".join(svg) + "\n")
    print("wrote %s (%d x %d)" % (os.path.relpath(args.out), WIDTH, y))


if __name__ == "__main__":
    main()
