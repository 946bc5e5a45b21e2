"""What the picture may and may not show besides the moving objects (maze family).

:func:`check_scene` (rule ``maze_redrawn``) compares sampled frames with frame 0 outside
what is expected to change (the agent's and the box's footprints, the trail, the goal
when the agent stands on it): a changed blob of at least a quarter cell is a redraw
(walls added or removed, the goal moved, paint where the agent has not been).
:func:`trail_painted` reads which rooms show the trail in each frame (trail skins), the
evidence :func:`~gen_reason.verifiers.walk.walk_graph` asks of a long move.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from gen_reason.verifiers.tracked import Track
from gen_reason.verifiers.walk import ObjectPath

TRAIL_COVER = 0.3  # fraction of a room's centre patch in the trail colour that counts as painted


def trail_painted(track: Track, spec: dict) -> np.ndarray | None:
    """Which rooms show the trail colour in each frame: ``(T, N)`` bool, or ``None`` when
    the spec draws no trail.

    A room counts as painted when at least ``TRAIL_COVER`` of the patch of +-0.3 step
    around its node is nearer the trail colour than any other scene colour (floor, wall,
    goal, agent), so compression noise and a slight colour shift do not matter.
    """
    colours = spec.get("colors") or {}
    if not spec.get("trail") or "trail" not in colours:
        return None
    palette = [colours["trail"]] + [colours[k] for k in ("floor", "wall", "goal", "background") if k in colours]
    palette.append(spec["agent"]["color"])
    palette_arr = np.asarray(palette, np.float32)
    work = track.work
    frames = work.frames
    t, h, w = frames.shape[:3]
    centres = work.to_work(np.asarray(spec["nodes"], float))
    r = max(1, int(round(0.3 * float(spec["step_px"]) * work.mean_scale)))
    xs = np.clip(np.round(centres[:, 0]).astype(int)[:, None] + np.arange(-r, r + 1)[None], 0, w - 1)
    ys = np.clip(np.round(centres[:, 1]).astype(int)[:, None] + np.arange(-r, r + 1)[None], 0, h - 1)
    # (T, N, P, P, 3) patches gathered at once; small (N rooms x a few pixels).
    patches = frames[:, ys[:, :, None], xs[:, None, :]].astype(np.float32)
    d = ((patches[..., None, :] - palette_arr) ** 2).sum(-1)
    is_trail = d.argmin(-1) == 0
    return is_trail.reshape(t, len(centres), -1).mean(-1) >= TRAIL_COVER


_KERNEL3 = np.ones((3, 3), np.uint8)


def _window(shape: tuple[int, int], centre: np.ndarray, half: float) -> tuple[slice, slice] | None:
    """Rows and columns of the pixels (indices as coordinates) within ``half`` of ``centre``
    along each axis, clipped to ``shape``; None when none is inside."""
    h, w = shape
    x0, x1 = max(0, int(np.ceil(centre[0] - half))), min(w - 1, int(np.floor(centre[0] + half)))
    y0, y1 = max(0, int(np.ceil(centre[1] - half))), min(h - 1, int(np.floor(centre[1] + half)))
    if x0 > x1 or y0 > y1:
        return None
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def _fill_disc(mask: np.ndarray, centre: np.ndarray, radius: float) -> None:
    """Set ``mask`` where ``(x - cx)**2 + (y - cy)**2 <= radius**2`` (pixel indices as
    coordinates), touching only the disc's bounding box: the same pixels as the
    whole-image test, at a cost that does not grow with the frame."""
    window = _window(mask.shape, centre, radius)
    if window is not None:
        rows, cols = window
        ys = np.arange(rows.start, rows.stop)[:, None]  # np.ogrid's grid without its indexing machinery
        xs = np.arange(cols.start, cols.stop)[None, :]
        mask[rows, cols] |= (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius ** 2


def _fill_square(mask: np.ndarray, centre: np.ndarray, half: float) -> None:
    """Set ``mask`` where ``|x - cx| <= half`` and ``|y - cy| <= half`` (pixel indices)."""
    window = _window(mask.shape, centre, half)
    if window is not None:
        mask[window] = True


def check_scene(track: Track, spec: dict, agent_path: ObjectPath | None = None, diff_threshold: int = 60,
                min_blob_cells: float = 0.25) -> list[dict]:
    """``maze_redrawn``: compare sampled frames with frame 0 outside the moving objects.

    A pixel changed when its (3x3-blurred) colour differs from frame 0 by more than
    ``diff_threshold`` in some channel (the working frames are already corrected for
    global brightness drift, see :func:`.work.prepare_video`); changes within the agent's
    (and box's) current and start footprints, the trail's cells (trail skins: around every
    tracked position and every node of ``agent_path`` entered so far, which includes rooms
    crossed between sampled frames) and the goal (when the agent stands on it) are
    expected. A changed blob larger than ``min_blob_cells`` of a cell (``step_px``
    squared) is a redraw. Compression noise makes small, thin blobs only.
    """
    frames = track.work.frames
    t = len(frames)
    sample = np.unique(np.linspace(1, t - 1, num=min(t - 1, 24)).round().astype(int)) if t > 1 else []
    if len(sample) == 0:
        return []
    h = frames.shape[1]
    diffs = _scene_diffs(frames, sample, diff_threshold)  # (S, h + 1, w): a 0 separator row per frame
    changed = [s for s, d in enumerate(diffs) if cv2.countNonZero(d) > 0]
    for s, allowed in zip(changed, _expected_changes(track, spec, agent_path, [sample[s] for s in changed])):
        diffs[s, :h][allowed] = 0
    return _first_redraw(diffs, sample, track, spec, min_blob_cells)


def _expected_changes(track: Track, spec: dict, agent_path: ObjectPath | None,
                      frames_wanted: list[int]) -> Iterator[np.ndarray]:
    """Per frame of ``frames_wanted`` (ascending), the ``(h, w)`` mask of the working frame
    where a change from frame 0 is expected (see :func:`check_scene`)."""
    work = track.work
    h, w = work.frames.shape[1:3]
    step_w = float(spec["step_px"]) * work.mean_scale
    # Every position in working pixels once (the same arithmetic as one point at a time).
    nodes_w = work.to_work(np.asarray(spec["nodes"], float))
    footprints = _footprints(track, spec, nodes_w)
    agent_pos = track.agent.positions
    agent_w = footprints[0][0]
    trail = bool(spec.get("trail"))
    trail_r = 0.75 * step_w + 2
    gx0, gy0, gx1, gy1 = spec["goal_box"]
    goal_xy = np.array([(gx0 + gx1) / 2, (gy0 + gy1) / 2])
    c0 = work.to_work(np.array([gx0, gy0], float))
    c1 = work.to_work(np.array([gx1, gy1], float))
    goal_rows = slice(max(0, int(c0[1]) - 1), int(c1[1]) + 2)
    goal_cols = slice(max(0, int(c0[0]) - 1), int(c1[0]) + 2)
    trail_mask = np.zeros((h, w), bool)
    trail_upto = 0
    if agent_path is not None:
        path_nodes = nodes_w[np.asarray(agent_path.node_path, int)] if len(agent_path.node_path) else nodes_w[:0]
        path_entered = np.asarray(agent_path.node_frames)
        path_done = np.zeros(len(path_nodes), bool)
    at_start = np.zeros((h, w), bool)  # every object's start footprint: allowed in every frame
    for _, _, start_w, radius in footprints:
        _fill_disc(at_start, start_w, radius)
    for k in frames_wanted:
        allowed = at_start.copy()
        for positions_w, shown, start_w, radius in footprints:
            if shown[k] >= 0:
                _fill_disc(allowed, positions_w[shown[k]], radius)
        if trail:
            for j in range(trail_upto, k + 1):
                if not np.isnan(agent_w[j, 0]):
                    _fill_square(trail_mask, agent_w[j], trail_r)
            trail_upto = k + 1
            if agent_path is not None:
                todo = np.flatnonzero(~path_done & (path_entered <= k))
                for i in todo:
                    _fill_square(trail_mask, path_nodes[i], trail_r)
                path_done[todo] = True
            allowed |= trail_mask
        p = agent_pos[k]
        if not np.isnan(p[0]) and np.linalg.norm(p - goal_xy) <= 1.0 * float(spec["step_px"]):
            allowed[goal_rows, goal_cols] = True
        yield allowed


def _footprints(track: Track, spec: dict, nodes_w: np.ndarray) -> list[tuple]:
    """Per moving object (the agent, the box): its working positions, per frame the frame
    whose position shows it (the frame itself, or where it was last seen before a frame
    where it is lost; -1: never yet), its start and the radius of its picture (working
    pixels)."""
    work = track.work
    t = len(work.frames)
    scale = work.mean_scale
    # The object's picture may reach past its tracked colour (a sprite: ``extent_px``).
    agent_r = 0.5 * max(float(spec["agent"]["size_px"]), float(spec["agent"].get("extent_px", 0))) * scale * 1.5 + 3
    objects = [(track.agent.positions, nodes_w[int(spec["start"])], agent_r)]
    if spec.get("box") and track.box is not None:
        box_r = 0.5 * max(float(spec["box"].get("size_px", spec["step_px"])),
                          float(spec["box"].get("extent_px", 0))) * scale * 1.5 + 3
        objects.append((track.box.positions, nodes_w[int(spec["box"]["start"])], box_r))
    footprints = []
    for positions, start_w, radius in objects:
        seen = ~np.isnan(positions[:, 0])
        last_seen = np.maximum.accumulate(np.where(seen, np.arange(t), -1))
        shown = np.where(seen, np.arange(t), np.concatenate([[-1], last_seen[:-1]]))
        footprints.append((work.to_work(positions), shown, start_w, radius))
    return footprints


def _first_redraw(diffs: np.ndarray, sample: np.ndarray, track: Track, spec: dict,
                  min_blob_cells: float) -> list[dict]:
    """``maze_redrawn`` at the first sampled frame whose unexpected changes (``diffs``, from
    :func:`_scene_diffs` with the expected ones cleared) hold a blob of at least
    ``min_blob_cells`` of a cell once opened (3x3), named by its largest blob; else none."""
    work = track.work
    frames = work.frames
    h, w = frames.shape[1:3]
    step_w = float(spec["step_px"]) * work.mean_scale
    min_area = min_blob_cells * step_w ** 2
    # The changes outside what is allowed, opened (3x3) and split into blobs: all sampled
    # frames as one tall image, each frame followed by its separator row, which is 1 while
    # eroding and 0 while dilating and labelling (the values that leave a frame's own
    # border handling as it is), so every result equals the per-frame call.
    tall = diffs.reshape(-1, w)
    diffs[:, h] = 1
    eroded = cv2.erode(tall, _KERNEL3)
    eroded.reshape(diffs.shape)[:, h] = 0
    opened = cv2.dilate(eroded, _KERNEL3)
    opened.reshape(diffs.shape)[:, h] = 0
    if not cv2.countNonZero(opened):  # nothing left to label (a clean video, usually)
        return []
    _, labels, stats, cents = cv2.connectedComponentsWithStats(opened, connectivity=8)
    frame_of = stats[1:, cv2.CC_STAT_TOP] // (h + 1)  # ascending: labels follow the raster order
    area = stats[1:, cv2.CC_STAT_AREA]
    big = np.flatnonzero(area >= min_area)
    if len(big) == 0:
        return []
    s = int(frame_of[big[0]])  # the first sampled frame with a redraw; its largest blob
    mine = np.flatnonzero(frame_of == s)
    j = 1 + int(mine[np.argmax(area[mine])])
    k = int(sample[s])
    centre = cents[j] - (0.0, s * (h + 1))
    where = work.to_spec(centre)
    blob = labels.reshape(diffs.shape)[s, :h] == j
    what = _describe_change(frames[0], frames[k], blob, where, k, track, spec)
    return [{"rule": "maze_redrawn", "frame": k,
             "detail": f"the scene changed at frame {k} around ({where[0]:.0f}, {where[1]:.0f}) px "
                       f"({stats[j, cv2.CC_STAT_AREA] / step_w ** 2:.1f} cells): {what}"}]


def _scene_diffs(frames: np.ndarray, sample: np.ndarray, threshold: int) -> np.ndarray:
    """Where each sampled frame differs from frame 0: some channel of the 3x3-blurred
    frames differs by more than ``threshold``. Returns uint8 ``(S, H + 1, W)`` masks (1 =
    changed) with a zero separator row after each frame, ready for the tall-image calls.

    All sampled frames are blurred as one tall image in which each frame is framed by its
    own reflected rows (row 1 above, row H-2 below: OpenCV's default BORDER_REFLECT_101),
    so each blurred frame equals the per-frame ``cv2.blur``; ``cv2.inRange`` then tests
    all three channels of ``|blurred - first|`` in one pass.
    """
    t, h, w = frames.shape[:3]
    count = len(sample)
    padded = np.empty((count + 1, h + 2, w, 3), np.uint8)  # frame 0 last, blurred the same way
    for i, k in enumerate([*sample, 0]):
        padded[i, 1:h + 1] = frames[k]
    padded[:, 0] = padded[:, 1 + min(1, h - 1)]
    padded[:, h + 1] = padded[:, 1 + max(h - 2, 0)]
    blurred = cv2.blur(padded.reshape(-1, w, 3), (3, 3)).reshape(padded.shape)
    for i in range(count):  # in place: |blurred - first| (the border rows too, dropped below)
        cv2.absdiff(blurred[i], blurred[count], dst=blurred[i])
    same = cv2.inRange(blurred[:count].reshape(-1, w, 3), (0, 0, 0), (threshold, threshold, threshold))
    out = np.zeros((count, h + 1, w), np.uint8)
    np.less(same.reshape(count, h + 2, w)[:, 1:h + 1], 1, out=out[:, :h].view(bool))
    return out


def _describe_change(first: np.ndarray, frame: np.ndarray, blob: np.ndarray, where: np.ndarray, k: int,
                     track: Track, spec: dict, dark: int = 96) -> str:
    """What a changed blob of the scene check most likely is, for the reason a person reads
    (the verdict does not depend on it): walls erased or drawn (pixels dark in one frame
    and not in the other), the goal changed, a faded or smeared agent (the tracker does
    not see the agent in frame ``k`` and the blob lies where it was or went next), or other
    paint (e.g. a trail where the agent has not been)."""
    was_dark = first[blob].max(axis=1) < dark
    now_dark = frame[blob].max(axis=1) < dark
    if np.mean(was_dark & ~now_dark) > 0.3:
        return "walls erased"
    if np.mean(now_dark & ~was_dark) > 0.3:
        return "walls drawn"
    gx0, gy0, gx1, gy1 = spec["goal_box"]
    pad = 0.5 * float(spec["step_px"])
    goal_colour = (spec.get("colors") or {}).get("goal")
    looks_goal = goal_colour is not None and np.mean(
        np.abs(frame[blob].astype(int) - np.asarray(goal_colour)).max(axis=1) < 60) > 0.5
    if looks_goal or (gx0 - pad <= where[0] <= gx1 + pad and gy0 - pad <= where[1] <= gy1 + pad):
        return "the goal redrawn"
    positions = track.agent.positions
    if np.isnan(positions[k, 0]):
        seen = np.flatnonzero(~np.isnan(positions[:, 0]))
        near = [positions[i] for i in (seen[seen < k][-1:].tolist() + seen[seen > k][:1].tolist())]
        if any(np.linalg.norm(where - p) <= 2.5 * float(spec["step_px"]) for p in near):
            return "the agent is not visible in this frame and the picture changed near its way (a faded or smeared agent)"
    return "paint outside the agent's way so far (e.g. a trail where the agent has not been, or a new object)"
