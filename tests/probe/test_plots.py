"""The probe's figures: the x0 filmstrip's layout, and the charts are written (Agg backend)."""

import numpy as np

from gen_reason.probe import plots
from gen_reason.probe.layers import LayerProbeResult


def test_filmstrip_rows_are_steps_and_columns_are_frames():
    videos = {step: np.full((10, 12, 12, 3), step * 20, np.uint8) for step in range(5)}
    strip = plots.x0_filmstrip(videos, frames=4, min_cell=24, gap=2, final=np.zeros((10, 12, 12, 3), np.uint8))
    cell = 24  # 12 px frames enlarged twice
    assert strip.shape == (18 + 6 * (cell + 2), 110 + 4 * (cell + 2), 3)
    # Row k (step k) shows that step's frames.
    y = 18 + 2 * (cell + 2) + cell // 2
    assert (strip[y, 110 + 5] == 40).all()


def test_filmstrip_thins_out_many_steps():
    videos = {step: np.zeros((4, 8, 8, 3), np.uint8) for step in range(50)}
    strip = plots.x0_filmstrip(videos, max_rows=5, min_cell=8, gap=0)
    assert strip.shape[0] == 18 + 5 * 8


def test_charts_are_written(tmp_path):
    curve = {"steps": [0, 2, 4], "metrics": {"success": [0.0, 0.5, 1.0], "precision_rate": [0.1, np.nan, 0.9]},
             "final_agreement": [0.0, 0.5, 1.0], "mean_commit_step": 2.0}
    sweep = [{"kind": "noise", "step": 0, "path_changed": 1.0, "outcome_flipped": 0.5},
             {"kind": "noise", "step": 2, "path_changed": 0.0, "outcome_flipped": 0.0}]
    result = LayerProbeResult(layers=["a", "b"], steps=[0, 2, 4],
                              accuracy={"agent_cell": np.array([[0.1, 0.2, np.nan], [0.3, 0.4, 0.5]]),
                                        "on_path": np.full((2, 3), 0.6)},
                              chance={"agent_cell": 0.1, "on_path": 0.5})
    for path in (plots.step_metric_heatmap(tmp_path / "m.png", curve),
                 plots.emergence_plot(tmp_path / "e.png", curve, sweep),
                 plots.layer_probe_heatmaps(tmp_path / "l.png", result)):
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
