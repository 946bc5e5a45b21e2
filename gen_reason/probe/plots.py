"""Figures of the probe: the x0 filmstrip, the step x metric heatmap, the layer x step accuracy heatmap.

The filmstrip is plain numpy + OpenCV (an image a person can zoom into: rows = steps,
columns = frames, small videos enlarged by whole pixels); the charts use matplotlib's
Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from gen_reason.video import write_image


def x0_filmstrip(videos_by_step: Mapping[int, np.ndarray], *, frames: int = 8, max_rows: int = 16,
                 sigmas: Mapping | None = None, min_cell: int = 96, gap: int = 2,
                 final: np.ndarray | None = None) -> np.ndarray:
    """One image of the decoded x0 at each step: rows = steps, columns = ``frames`` evenly spaced frames.

    At most ``max_rows`` steps are drawn, evenly spaced, the first and last included.
    Each row is labelled with its step (and noise level when ``sigmas`` is given);
    ``final`` adds the generated video as the last row. Frames smaller than
    ``min_cell`` pixels are enlarged by a whole factor (nearest), so pixels stay sharp.
    """
    import cv2

    steps = sorted(videos_by_step)
    if len(steps) > max_rows:
        steps = [steps[i] for i in np.unique(np.round(np.linspace(0, len(steps) - 1, max_rows)).astype(int))]
    rows = [(f"step {step}" + (f" s={sigmas[step]:.2f}" if sigmas and sigmas.get(step) is not None else ""),
             videos_by_step[step]) for step in steps]
    if final is not None:
        rows.append(("final", final))
    if not rows:
        raise ValueError("no videos to draw")
    length, height, width = rows[0][1].shape[:3]
    picks = np.unique(np.round(np.linspace(0, length - 1, min(frames, length))).astype(int))
    factor = max(1, math.ceil(min_cell / max(height, width)))
    cell_h, cell_w = height * factor, width * factor
    label_w = 110
    canvas_h = len(rows) * (cell_h + gap) + 18
    canvas_w = label_w + len(picks) * (cell_w + gap)
    canvas = np.full((canvas_h, canvas_w, 3), 255, np.uint8)
    for column, frame in enumerate(picks):
        x = label_w + column * (cell_w + gap)
        cv2.putText(canvas, f"t={frame}", (x + 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    for row, (label, video) in enumerate(rows):
        y = 18 + row * (cell_h + gap)
        cv2.putText(canvas, label, (4, y + cell_h // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        for column, frame in enumerate(picks):
            image = video[min(frame, len(video) - 1)]
            image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
            x = label_w + column * (cell_w + gap)
            canvas[y : y + cell_h, x : x + cell_w] = image[:cell_h, :cell_w]
    return canvas


def write_filmstrip(path: str | Path, videos_by_step: Mapping[int, np.ndarray], **options) -> Path:
    """Write :func:`x0_filmstrip` as a PNG."""
    return write_image(Path(path), x0_filmstrip(videos_by_step, **options))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def heatmap(path: str | Path, matrix: np.ndarray, row_labels: Sequence, column_labels: Sequence, *, title: str,
            xlabel: str, ylabel: str, vmin: float | None = 0.0, vmax: float | None = 1.0,
            chance: float | None = None) -> Path:
    """A labelled heatmap with every cell's value written in it (NaN cells left blank)."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    fig_w = max(4.0, 0.45 * len(column_labels) + 2.5)
    fig_h = max(2.5, 0.35 * len(row_labels) + 1.5)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(column_labels)), [str(c) for c in column_labels], fontsize=7, rotation=90)
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f" (chance {chance:.2f})" if chance is not None else ""), fontsize=9)
    if matrix.size <= 600:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if value < (vmin or 0) + 0.6 * ((vmax or 1) - (vmin or 0)) else "black")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def step_metric_heatmap(path: str | Path, curve: dict) -> Path:
    """The step x metric heatmap of an :func:`~gen_reason.probe.emergence.emergence` curve (metrics as rows)."""
    extra = [name for name in ("final_agreement", "final_similarity") if name in curve]
    names = list(curve["metrics"]) + extra
    matrix = np.array([curve["metrics"][n] for n in curve["metrics"]] + [curve[n] for n in extra], dtype=float)
    return heatmap(path, matrix, names, curve["steps"], title="referee metrics of x0 by denoising step",
                   xlabel="denoising step", ylabel="metric (mean over samples)")


def emergence_plot(path: str | Path, curve: dict, interventions: Sequence[dict] = ()) -> Path:
    """Line plot of the emergence curve (left) and, when given, outcome change by intervention step (right)."""
    plt = _pyplot()
    panels = 2 if interventions else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.4), squeeze=False)
    ax = axes[0][0]
    for name, values in curve["metrics"].items():
        ax.plot(curve["steps"], values, marker="o", markersize=3, label=name)
    ax.plot(curve["steps"], curve["final_agreement"], marker="s", markersize=3, linestyle="--", color="black",
            label="path = final path")
    if "final_similarity" in curve:
        ax.plot(curve["steps"], curve["final_similarity"], marker="^", markersize=3, linestyle=":", color="black",
                label="similarity to final path")
    ax.axvline(curve["mean_commit_step"], color="grey", linestyle=":", label="mean commit step")
    ax.set_xlabel("denoising step")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("emergence of the answer in x0", fontsize=9)
    ax.legend(fontsize=6)
    if interventions:
        ax = axes[0][1]
        for kind in sorted({row["kind"] for row in interventions}):
            rows = sorted((row for row in interventions if row["kind"] == kind), key=lambda row: row["step"])
            ax.plot([r["step"] for r in rows], [r["path_changed"] for r in rows], marker="o", markersize=3,
                    label=f"{kind}: path changed")
            ax.plot([r["step"] for r in rows], [r["outcome_flipped"] for r in rows], marker="x", markersize=3,
                    linestyle="--", label=f"{kind}: success flipped")
        ax.set_xlabel("intervention after step")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("effect of an intervention on the outcome", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def layer_probe_heatmaps(path: str | Path, result) -> Path:
    """The layer x step probe-accuracy heatmaps of a :class:`~gen_reason.probe.readout.LayerProbeResult`, side by side."""
    plt = _pyplot()
    questions = list(result.accuracy)
    fig_w = max(4.0, 0.4 * len(result.steps) + 3.0)
    fig_h = max(2.6, 0.32 * len(result.layers) + 1.6)
    fig, axes = plt.subplots(1, len(questions), figsize=(fig_w * len(questions), fig_h), squeeze=False)
    titles = {"agent_cell": "which cell is the agent in (top-1)", "on_path": "is the cell on the solution path (bal. acc.)"}
    for ax, question in zip(axes[0], questions):
        matrix = result.accuracy[question]
        image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(result.steps)), [str(s) for s in result.steps], fontsize=7, rotation=90)
        ax.set_yticks(range(len(result.layers)), result.layers, fontsize=6)
        ax.set_xlabel("denoising step")
        ax.set_title(f"{titles.get(question, question)}; chance {result.chance[question]:.2f}", fontsize=8)
        if matrix.size <= 400:
            for (i, j), value in np.ndenumerate(matrix):
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5,
                            color="white" if value < 0.6 else "black")
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
