"""Reports of one or more runs: Markdown + HTML tables with confidence intervals, plots,
and a gallery of the best and worst videos.

``genreason report RUN [RUN ...] --out DIR`` writes ``report.md``, ``report.html`` and
``plots/*.png``; with one run and no ``--out`` they go into the run folder.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

from gen_reason.errors import UserError, writable_dir
from gen_reason.runs.store import load_results

HEADLINE = ("success", "success_lenient", "exact_match", "precision_rate", "step_deviation")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else math.nan


def summarise(results: list[dict], run_label: str = "") -> list[dict]:
    """One row per (run, task, difficulty, solver): n, success with Wilson CI, mean metrics, NFE."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        groups[(run_label, r["task"], r["difficulty"], r["solver"])].append(r)
    rows = []
    for (run, task, difficulty, solver), items in sorted(groups.items()):
        n = len(items)
        wins = sum(bool(r["success"]) for r in items)
        low, high = wilson_interval(wins, n)
        row = {"run": run, "task": task, "difficulty": difficulty, "solver": solver, "n": n,
               "success": wins / n, "ci_low": low, "ci_high": high}
        for metric in HEADLINE[1:]:
            row[metric] = _mean([r["metrics"].get(metric) for r in items])
        row["nfe"] = _mean([r.get("attempt", {}).get("compute", {}).get("nfe") for r in items])
        row["seconds"] = _mean([r.get("seconds") for r in items])
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as a Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            if c == "success":
                cells.append(f"{row['success']:.3f} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]")
            else:
                cells.append(_fmt(row.get(c, "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_success(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(list)
    for row in rows:
        series[(row["run"], row["task"], row["solver"])].append(row)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (run, task, solver), items in sorted(series.items()):
        xs = [r["difficulty"] for r in items]
        ys = [r["success"] for r in items]
        err = [[max(0.0, r["success"] - r["ci_low"]) for r in items], [max(0.0, r["ci_high"] - r["success"]) for r in items]]
        label = " / ".join(p for p in (run, task, solver) if p)
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("difficulty")
    ax.set_ylabel("strict success (95 % CI)")
    ax.set_title("Success by difficulty")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_budget(rows: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if not math.isnan(r["nfe"])]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    by_solver = defaultdict(list)
    for r in points:
        by_solver[(r["run"], r["solver"])].append(r)
    for (run, solver), items in sorted(by_solver.items()):
        nfe = _mean([r["nfe"] for r in items])
        succ = _mean([r["success"] for r in items])
        ax.scatter([nfe], [succ], s=50)
        ax.annotate(" / ".join(p for p in (run, solver) if p), (nfe, succ), fontsize=8)
    ax.set_xlabel("model forward passes per puzzle (NFE)")
    ax.set_ylabel("strict success")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Success vs compute")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_pass_at_k(results: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = defaultdict(list)
    for r in results:
        curve = r.get("attempt", {}).get("meta", {}).get("pass_at_k")
        if curve:
            curves[r["solver"]].append(curve)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for solver, items in sorted(curves.items()):
        ks = sorted({int(k) for c in items for k in c}, key=int)
        ys = [_mean([c.get(str(k), c.get(k)) for c in items]) for k in ks]
        ax.plot(ks, ys, marker="o", label=solver)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (reference metric)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("pass@k")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _gallery(run: Path, results: list[dict], out: Path, k: int = 3) -> list[tuple[str, Path, str]]:
    """Filmstrips of the best and worst results (by precision rate) with the track drawn."""
    from gen_reason.video import filmstrip, read_video, write_image

    with_video = [r for r in results if r.get("video") and (run / r["video"]).exists()]
    if not with_video:
        return []

    def quality(r):
        pr = r["metrics"].get("precision_rate")
        return (bool(r["success"]), pr if pr is not None else -1.0)

    ranked = sorted(with_video, key=quality)
    chosen = [("worst", r) for r in ranked[:k]] + [("best", r) for r in ranked[::-1][:k]]
    items = []
    for kind, r in chosen:
        video = read_video(run / r["video"])
        strip = _tracked_strip(r, video) if r.get("reference_trace") else filmstrip(video, 8)
        path = write_image(out / "gallery" / f"{kind}_{r['key'].replace('/', '-').replace('|', '__')}.png", strip)
        items.append((kind, path, f"{r['uid']} / {r['solver']}: {'success' if r['success'] else r.get('reason', 'fail')}"))
    return items


def _tracked_strip(record: dict, video):
    """A filmstrip with the extracted track drawn (its positions in the puzzle's pixels,
    the trace's ``image_size``)."""
    from gen_reason.runs.solve import draw_track
    from gen_reason.video import filmstrip

    return filmstrip(draw_track(video, record.get("reference_trace") or {}), 8)


def write_report(runs: list[str | Path], out: str | Path | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/`` for ``runs``; returns the Markdown path."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise UserError("give at least one run folder")
    out = Path(out) if out else (runs[0] if len(runs) == 1 else Path("report"))
    loaded = {}
    for run in runs:  # every run read before anything is written: a bad one leaves no folder behind
        try:
            loaded[run] = load_results(run)
        except UnicodeDecodeError:
            raise UserError(f"cannot read the results of {run}: results.jsonl is not a text file") from None
        except OSError as exc:
            raise UserError(f"cannot read the results of {run}: {exc.strerror or exc}") from None
        if not loaded[run]:
            raise UserError(f"{run} has no results yet")
    writable_dir(out / "plots")
    all_rows, all_results = [], []
    for run in runs:
        results = loaded[run]
        label = run.name if len(runs) > 1 else ""
        all_rows += summarise(results, label)
        all_results += results
    columns = (["run"] if len(runs) > 1 else []) + ["task", "difficulty", "solver", "n", "success",
                                                     "exact_match", "precision_rate", "step_deviation", "nfe", "seconds"]
    plots = [p for p in (_plot_success(all_rows, out / "plots" / "success_by_difficulty.png"),
                         _plot_budget(all_rows, out / "plots" / "success_vs_compute.png"),
                         _plot_pass_at_k(all_results, out / "plots" / "pass_at_k.png")) if p]
    gallery = _gallery(runs[0], loaded[runs[0]], out) if len(runs) == 1 else []
    md = ["# Evaluation report", "", "Runs: " + ", ".join(f"`{r}`" for r in runs), "",
          "Success is strict (goal reached with no rule broken), with 95 % Wilson intervals; "
          "metrics are means over instances (step deviation over successful ones).", "",
          markdown_table(all_rows, columns), ""]
    for p in plots:
        md += [f"![{p.stem}]({p.relative_to(out)})", ""]
    if gallery:
        md += ["## Gallery", ""]
        for kind, path, caption in gallery:
            md += [f"**{kind}**: {caption}", "", f"![{caption}]({path.relative_to(out)})", ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(_html(text))
    return out / "report.md"


def _html(markdown_text: str) -> str:
    """A minimal standalone HTML rendering of the report's Markdown (tables and images)."""
    body = []
    in_table = False
    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set(line.replace("|", "").strip()) <= {"-"}:
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<p><img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}"></p>')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>genreason report</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
