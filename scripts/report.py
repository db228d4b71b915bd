"""A model report card: speed at depth, the concurrency sweep and instruction following, one command.

Usage:
    python scripts/report.py --url http://localhost:8000/v1 --model qwen --model nemotron
    python scripts/report.py --url http://localhost:8000/v1 --model qwen --out-dir report/qwen-fp4 \\
        --bench-args "--concurrency 1,8,32 --depths 0,4096,16384" --eval-args "--thinking off"
    python scripts/report.py --from report/qwen-fp4/qwen --from report/qwen-fp8/qwen --out-dir report/fp4-vs-fp8

For each --model: scripts/bench.py (single stream, concurrency sweep, pp/tg at depth) into
OUT/<model>/bench and scripts/eval.py (the instruction-following suite) into OUT/<model>/eval,
then one OUT/report.md with the tables and three PNG plots beside it: speed_vs_depth.png,
concurrency_sweep.png, pass_rate_by_category.png. --from rebuilds a report from runs saved earlier
(each a directory holding bench/ and eval/), so two engines or FP4 vs FP8 measured on different days
or boxes go side by side; the label of a saved run is its directory name.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

from scripts import bench
from scripts import eval as ev


# ---------------------------------------------------------------------------- runs

def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def sub_args(add_cli_args, argv: list[str], what: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=what, exit_on_error=False)
    add_cli_args(parser)
    try:
        return parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise SystemExit(f"bad {what} arguments {shlex.join(argv)!r}: {exc}")


def run_model(args: argparse.Namespace, model: str) -> Path:
    """bench.py and eval.py for one model; returns the run directory (bench/ and eval/ inside)."""
    run_dir = args.out_dir / slug(model)
    common = ["--url", args.url, "--model", model, "--label", model, "--quiet"]
    if args.api_key:
        common += ["--api-key", args.api_key]
    b = sub_args(bench.add_cli_args, common + ["--out-dir", str(run_dir / "bench"), "--no-plots"]
                 + shlex.split(args.bench_args), "bench")
    e = sub_args(ev.add_cli_args, common + ["--out-dir", str(run_dir / "eval")] + shlex.split(args.eval_args), "eval")
    print(f"== {model}: benchmark", file=sys.stderr)
    bench.main(b)
    print(f"== {model}: instruction following", file=sys.stderr)
    ev.main(e)
    return run_dir


def load_run(run_dir: Path, label: Optional[str] = None) -> dict[str, Any]:
    """{label, bench: results.json, eval: eval.json} of a run directory; either part may be missing."""
    run: dict[str, Any] = {"label": label or run_dir.name, "bench": None, "eval": None}
    for key, rel in (("bench", "bench/results.json"), ("eval", "eval/eval.json")):
        path = run_dir / rel
        if path.exists():
            try:
                run[key] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"cannot read {path}: {exc}")
    if run["bench"] is None and run["eval"] is None:
        raise SystemExit(f"{run_dir}: neither bench/results.json nor eval/eval.json")
    for key in ("bench", "eval"):
        if run[key] is not None:
            run[key]["label"] = run["label"]
            if key == "eval":
                run[key]["summary"]["label"] = run["label"]
    return run


# ---------------------------------------------------------------------------- plots

def plot_sweep(runs: list[dict[str, Any]], path: Path) -> Optional[Path]:
    """Total output tok/s against concurrency, one line per model and prompt language."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drew = False
    for run in runs:
        rows = [r for r in (run["bench"] or {}).get("rows", []) if r["phase"] == "sweep"]
        for lang in sorted({r["lang"] for r in rows}):
            pts = sorted((r["concurrency"], r["total_tps"]) for r in rows if r["lang"] == lang)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{run['label']} ({lang})")
                drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("total output tokens/s")
    ax.set_title("Concurrency sweep")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_categories(runs: list[dict[str, Any]], path: Path) -> Optional[Path]:
    """Pass rate per case category, one bar per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in runs if r["eval"]]
    if not evals:
        return None
    cats = list(dict.fromkeys(c for r in evals for c in r["eval"]["summary"]["categories"]))
    width = 0.8 / len(evals)
    fig, ax = plt.subplots(figsize=(max(7, len(cats) * 0.8), 4.5))
    for i, run in enumerate(evals):
        per = run["eval"]["summary"]["categories"]
        xs = [j + (i - (len(evals) - 1) / 2) * width for j in range(len(cats))]
        ax.bar(xs, [per.get(c, {}).get("pass_rate", 0.0) for c in cats], width,
               label=f"{run['label']} ({run['eval']['summary']['grade']})")
    ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("pass rate (%)")
    ax.set_title("Instruction following by category")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- report

def depth_metric(run: dict[str, Any], depth: int, key: str) -> Optional[float]:
    for b in ((run["bench"] or {}).get("depth") or {}).get("benchmarks", []):
        if b["context_size"] == depth and b[key]:
            return b[key]["mean"]
    return None


def peak_sweep(run: dict[str, Any]) -> Optional[tuple[float, int]]:
    rows = [r for r in (run["bench"] or {}).get("rows", []) if r["phase"] == "sweep"]
    best = max(rows, key=lambda r: r["total_tps"], default=None)
    return (best["total_tps"], best["concurrency"]) if best else None


def summary_table(runs: list[dict[str, Any]]) -> str:
    depths = sorted({b["context_size"] for r in runs for b in ((r["bench"] or {}).get("depth") or {}).get("benchmarks", [])})
    lo, hi = (depths[0], depths[-1]) if depths else (None, None)
    head = ["model", "grade", "pass rate", "thinking on", "thinking off", "eval tok/s"]
    if depths:
        head += [f"pp t/s @ d{lo}", f"tg t/s @ d{lo}"] + ([f"tg t/s @ d{hi}"] if hi != lo else [])
    head += ["peak total tok/s (conc)"]
    out = ["| " + " | ".join(head) + " |", "| --- | --- | " + " | ".join("---:" for _ in head[2:]) + " |"]
    for r in runs:
        s = (r["eval"] or {}).get("summary")
        modes = (s or {}).get("modes", {})
        cells = [r["label"], s["grade"] if s else "-", f"{s['pass_rate']:.1f}%" if s else "-"]
        cells += [f"{modes[m]['pass_rate']:.1f}%" if m in modes else "-" for m in ("on", "off")]
        cells.append(bench._fmt(s["tps"]) if s else "-")
        if depths:
            cells += [bench._fmt(depth_metric(r, lo, "pp_throughput")), bench._fmt(depth_metric(r, lo, "tg_throughput"))]
            if hi != lo:
                cells.append(bench._fmt(depth_metric(r, hi, "tg_throughput")))
        peak = peak_sweep(r)
        cells.append(f"{peak[0]:.1f} ({peak[1]})" if peak else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def category_table(runs: list[dict[str, Any]]) -> str:
    evals = [r for r in runs if r["eval"]]
    cats = list(dict.fromkeys(c for r in evals for c in r["eval"]["summary"]["categories"]))
    out = ["| category | " + " | ".join(r["label"] for r in evals) + " |",
           "| --- | " + " | ".join("---:" for _ in evals) + " |"]
    for c in cats:
        cells = []
        for r in evals:
            v = r["eval"]["summary"]["categories"].get(c)
            cells.append(f"{v['passed']}/{v['cases']} ({v['pass_rate']:.0f}%)" if v else "-")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def failures(run: dict[str, Any]) -> str:
    bad = [x for x in run["eval"]["results"] if not x["passed"]]
    if not bad:
        return "Every case passed.\n"
    out = ["| case | thinking | reason |", "| --- | --- | --- |"]
    out += [f"| {x['id']} | {x['thinking']} | {x['reason'].replace('|', '/')} |" for x in bad]
    return "\n".join(out) + "\n"


def render(runs: list[dict[str, Any]], images: dict[str, Optional[Path]], title: str) -> str:
    benches = [r for r in runs if r["bench"]]
    evals = [r for r in runs if r["eval"]]
    out = [f"# {title}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
           f"endpoints: {', '.join(sorted({(r['bench'] or r['eval'])['url'] for r in runs}))}.", "",
           "## Summary", "", summary_table(runs)]
    depth_runs = [r for r in benches if r["bench"].get("depth")]
    if depth_runs:
        out += ["## Speed at depth", ""]
        if images.get("depth"):
            out += [f"![speed vs depth]({images['depth'].name})", ""]
        for r in depth_runs:
            d = r["bench"]["depth"]
            out += [f"### {r['label']}", "", bench.depth_table({**d, "model": r["label"]}),
                    f"Prompt sizes: {d['token_counting']}; latency ({d['latency_mode']}) "
                    f"{d['latency_ms']:.1f} ms taken off ttfr.", ""]
    sweep_runs = [r for r in benches if r["bench"]["rows"]]
    if sweep_runs:
        out += ["## Single stream and concurrency sweep", ""]
        if images.get("sweep"):
            out += [f"![concurrency sweep]({images['sweep'].name})", ""]
        for r in sweep_runs:
            rows = [bench.LevelStats(**x) for x in r["bench"]["rows"]]
            out += [f"### {r['label']}", "", bench.markdown_tables(rows).replace("### ", "#### ")]
    if evals:
        out += ["## Instruction following", ""]
        if images.get("categories"):
            out += [f"![pass rate by category]({images['categories'].name})", ""]
        out += [ev.ranking([r["eval"] for r in evals]), "### By category", "", category_table(runs)]
        for r in evals:
            out += [f"### Failed cases: {r['label']}", "", failures(r)]
    out += ["## How this was measured", "",
            "- Speed: `scripts/bench.py` (client clock, streamed, `ignore_eos`); pp/tg at depth as llama-benchy "
            "(pp t/s = prompt tokens / (ttfr - latency), tg t/s = (tokens - 1) / decode time), every request "
            "opening with a unique head so the prefix cache reuses nothing.",
            "- Instruction following: `scripts/eval.py`, the cases of `scripts/eval_cases.yaml` graded by rule "
            "on the answer (not the reasoning), thinking on and off; grade S >= 90%, A >= 80%, B >= 70%, "
            "C >= 60%, D below; tok/s is the decode speed of those same requests.", ""]
    return "\n".join(out)


def write_report(runs: list[dict[str, Any]], out_dir: Path, title: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {"depth": bench.plot_depth([r["bench"] for r in runs if r["bench"]], out_dir / "speed_vs_depth.png"),
              "sweep": plot_sweep(runs, out_dir / "concurrency_sweep.png"),
              "categories": plot_categories(runs, out_dir / "pass_rate_by_category.png")}
    path = out_dir / "report.md"
    path.write_text(render(runs, images, title), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- CLI

def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://localhost:8000/v1",
                        help="OpenAI base URL: the router or a backend (default: http://localhost:8000/v1)")
    parser.add_argument("--model", action="append", default=[],
                        help="model id or alias to measure; repeat for several (default: none)")
    parser.add_argument("--api-key", default=None, help="bearer token, if the endpoint wants one (default: none)")
    parser.add_argument("--from", dest="runs", action="append", type=Path, default=[],
                        help="a saved run directory (with bench/ and eval/) to include; repeatable (default: none)")
    parser.add_argument("--bench-args", default="", help="extra scripts/bench.py flags, quoted (default: none)")
    parser.add_argument("--eval-args", default="", help="extra scripts/eval.py flags, quoted (default: none)")
    parser.add_argument("--title", default="Model report card", help="report heading (default: Model report card)")
    parser.add_argument("--out-dir", type=Path, default=Path("report"),
                        help="where runs, report.md and the PNGs go (default: report)")


def main(args: argparse.Namespace) -> int:
    if not args.model and not args.runs:
        raise SystemExit("nothing to report: give --model (to measure) or --from (saved runs)")
    for d in args.runs:
        if not d.is_dir():
            raise SystemExit(f"--from {d}: not a directory")
    runs = [load_run(run_model(args, m), label=m) for m in args.model]
    runs += [load_run(d) for d in args.runs]
    path = write_report(runs, args.out_dir, args.title)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cli_args(_parser)
    sys.exit(main(_parser.parse_args()))
