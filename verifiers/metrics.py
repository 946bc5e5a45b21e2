"""VR-Bench's maze metrics: precision rate, success, step deviation, exact match, fidelity.

Defined as in the VR-Bench paper ("Reasoning via Video", FoundationAgents/VR-Bench) and
its code, ``evaluation/videomodel_eval/metrics.py`` / ``metrics_gpu.py``, so numbers
compare with theirs. Trajectories are ``(n, 2)`` arrays of ``(x, y)`` pixel positions;
every metric works on them normalised by the image width and height (``[0, 1]^2``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DEFAULT_EPS = 0.01  # VR-Bench's class default; its evaluation script passes 0.05
DEFAULT_SAMPLES = 100  # VR-Bench's class default; its evaluation script passes 1000
EM_PR_THRESHOLD = 0.98
EM_SD_THRESHOLD = 0.1


def normalise(traj, width: float, height: float) -> np.ndarray:
    """Divide x by ``width`` and y by ``height`` (VR-Bench ``normalize_trajectory``)."""
    out = np.asarray(traj, np.float64).reshape(-1, 2).copy()
    out[:, 0] /= width
    out[:, 1] /= height
    return out


def path_length(traj) -> float:
    """Sum of segment lengths of a polyline (VR-Bench ``compute_path_length``)."""
    traj = np.asarray(traj, np.float64).reshape(-1, 2)
    if len(traj) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(traj, axis=0), axis=1).sum())


def _resample_at(traj: np.ndarray, targets: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(traj, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.minimum(targets, s[-1])
    return np.column_stack([np.interp(targets, s, traj[:, 0]), np.interp(targets, s, traj[:, 1])])


def resample_by_length(traj, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along ``traj`` (VR-Bench ``resample_by_length``)."""
    traj = np.asarray(traj, np.float64).reshape(-1, 2)
    if len(traj) == 0:
        return np.zeros((n, 2))
    if len(traj) < 2 or path_length(traj) < 1e-10:
        return np.tile(traj[0], (n, 1))
    return _resample_at(traj, np.linspace(0.0, path_length(traj), n))


def precision_rate(gt, gen, eps: float = DEFAULT_EPS, samples: int = DEFAULT_SAMPLES) -> float:
    """PR: the fraction of the ground-truth path the generated path follows from the start.

    Reference: VR-Bench ``PrecisionRateMetric``. With ``L`` the ground-truth length,
    both (normalised) paths are sampled at the arc lengths ``s_i = i L / (N - 1)``,
    ``i = 0..N-1`` (the generated path clamped at its own end); ``PR = k / N`` where
    ``k`` is the index of the first sample with ``||gt_i - gen_i|| > eps`` (``PR = 1`` when
    none). Fewer than two points in either path gives 0. ``eps`` and ``N`` default to
    the class defaults 0.01 and 100; VR-Bench's evaluation script uses 0.05 and 1000.
    """
    gt = np.asarray(gt, np.float64).reshape(-1, 2)
    gen = np.asarray(gen, np.float64).reshape(-1, 2)
    if len(gt) < 2 or len(gen) < 2:
        return 0.0
    gt_s = resample_by_length(gt, samples)
    gen_s = _resample_at(gen, np.linspace(0.0, path_length(gt), samples))
    matches = np.linalg.norm(gt_s - gen_s, axis=1) <= eps
    if matches.all():
        return 1.0
    return float(np.argmin(matches)) / samples


def reached_box(traj, box) -> bool:
    """SR for one trajectory: any point inside ``box`` = ``[x0, y0, x1, y1]`` (inclusive).

    Reference: VR-Bench ``SuccessRateMetric`` (for sokoban it is given the box's
    trajectory instead of the player's).
    """
    traj = np.asarray(traj, np.float64).reshape(-1, 2)
    if len(traj) == 0:
        return False
    x0, y0, x1, y1 = box
    inside = (traj[:, 0] >= x0) & (traj[:, 0] <= x1) & (traj[:, 1] >= y0) & (traj[:, 1] <= y1)
    return bool(inside.any())


def step_deviation(gt, gen, success: bool) -> float:
    """SD = ``len(gen) / len(gt) - 1``, defined only when successful (else NaN).

    Reference: VR-Bench ``StepMetric``. VR-Bench reports a negative value as N/A (and
    its exact match then treats it as 0); we return the signed value and leave that
    choice to :func:`exact_match`.
    """
    if not success:
        return math.nan
    gt_len = path_length(gt)
    if gt_len < 1e-10:
        return 0.0
    return path_length(gen) / gt_len - 1.0


def exact_match(success: bool, pr: float, sd: float, negative_sd_as_zero: bool = True) -> bool:
    """EM = success and PR >= 0.98 and |SD| <= 0.1.

    Reference: VR-Bench ``ExactMatchMetric``; as there, a negative SD (the generated path
    is shorter than the ground truth, which PR already judges) counts as 0 unless
    ``negative_sd_as_zero`` is False.
    """
    if not success:
        return False
    if math.isnan(sd) or (negative_sd_as_zero and sd < 0):
        sd = 0.0
    return bool(pr >= EM_PR_THRESHOLD and abs(sd) <= EM_SD_THRESHOLD)


def maze_fidelity(frames: np.ndarray, gen_traj_px, start_box, goal_box, agent_wh, frame_step: int = 5,
                  pixel_threshold: int = 5) -> float:
    """MF: how much of the picture outside start, goal and agent stayed as in frame 0.

    Reference: VR-Bench ``FidelityMetric``. Frames are compared in grayscale. For every
    ``frame_step``-th frame ``k > 0``: mask out the start box, the goal box and an
    agent-sized box centred on the generated trajectory point
    ``int(k / T * (len(traj) - 1))``; the frame's score is ``1 - share of the remaining
    pixels whose gray value differs from frame 0 by more than pixel_threshold``.
    ``frames`` are uint8 RGB ``(T, H, W, 3)``.
    MF is the mean score. VR-Bench returns 0 when no frame is sampled (videos of 5
    frames or fewer); we return NaN there, so a missing number never reads as a bad one. Boxes are ``[x0, y0, x1, y1]``
    and the trajectory is in the frames' own pixel coordinates; ``agent_wh`` is the
    agent box's (width, height).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"maze_fidelity needs uint8 RGB frames (T, H, W, 3); got {frames.dtype} {frames.shape}")
    t, h, w = frames.shape[:3]
    traj = np.asarray(gen_traj_px, np.float64).reshape(-1, 2)
    base = np.ones((h, w), bool)
    for box in (start_box, goal_box):
        _clear(base, box)
    sampled = list(range(frame_step, t, frame_step))
    if not sampled:
        return math.nan
    # Gray values of frame 0 and every sampled frame in one conversion (a tall image), the
    # changed pixels (|gray - gray0| > pixel_threshold, as int16 arithmetic gives) outside
    # start and goal counted per frame; those inside the frame's agent box come off.
    frames_u8 = np.ascontiguousarray(frames[[0, *sampled]], np.uint8)
    gray = cv2.cvtColor(frames_u8.reshape(-1, w, 3), cv2.COLOR_RGB2GRAY).reshape(len(sampled) + 1, h, w)
    base_u8 = base.view(np.uint8)
    base_count = cv2.countNonZero(base_u8)
    changed = np.empty((h, w), np.uint8)
    scores = []
    for i, k in enumerate(sampled, start=1):
        cv2.absdiff(gray[i], gray[0], dst=changed)
        cv2.threshold(changed, pixel_threshold, 1, cv2.THRESH_BINARY, dst=changed)
        changed &= base_u8
        n_valid, n_changed = base_count, cv2.countNonZero(changed)
        if len(traj):
            px, py = traj[min(int(k / t * (len(traj) - 1)), len(traj) - 1)]
            aw, ah = agent_wh
            rows, cols = _box_slices((h, w), [int(px - aw / 2), int(py - ah / 2), int(px - aw / 2) + int(aw),
                                              int(py - ah / 2) + int(ah)])
            n_valid -= int(np.count_nonzero(base[rows, cols]))
            n_changed -= int(np.count_nonzero(changed[rows, cols]))
        if n_valid == 0:
            scores.append(1.0)
            continue
        scores.append(1.0 - n_changed / n_valid)
    return float(np.mean(scores))


def _box_slices(shape: tuple[int, int], box) -> tuple[slice, slice]:
    """The rows and columns of ``box`` ``[x0, y0, x1, y1]`` clipped to ``shape`` (as :func:`_clear`)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = shape
    return slice(max(0, y0), min(h, max(0, y1))), slice(max(0, x0), min(w, max(0, x1)))


def _clear(mask: np.ndarray, box) -> None:
    mask[_box_slices(mask.shape, box)] = False
