"""The referee's fast paths give what the plain computations give: decoding straight to the
working size, shrinking, drift correction, the colour pre-filter and sparse components."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles.registry import get_task
from gen_reason.verifiers import colours, track
from gen_reason.verifiers import work as work_video
from gen_reason.verifiers.degrade import brightness_drift, resize
from gen_reason.verifiers.maze import MazeReferenceVerifier
from gen_reason.video import read_video, video_size, write_mp4


@pytest.fixture(scope="module")
def large_mp4(tmp_path_factory):
    """A medium grid maze's ground-truth video at 704x704, as H.264."""
    inst = get_task("maze/grid").generate(3, "medium")
    video = resize(inst.solution_video(), (704, 704))
    return inst, write_mp4(tmp_path_factory.mktemp("v") / "gt.mp4", video)


def test_scoring_a_file_decodes_at_the_working_size_with_the_full_size_verdicts(large_mp4, tmp_path):
    """``score(instance, path)`` and ``genreason score`` read files through the verifier's
    ``read_video`` (working size); verdicts and reference metrics equal scoring the
    full-size decode, for the ground truth and for a cheat; a video too small to show the
    puzzle is still decoded whole, so the verifier says why it cannot judge it."""
    from gen_reason.runs.scoring import score_video

    inst, path = large_mp4
    verifier = MazeReferenceVerifier()
    assert verifier.read_video(path, inst).shape[1:3] == work_video.read_work_video(path, inst.spec).shape[1:3]
    full_video = read_video(path)
    end_state = np.concatenate([full_video[:1], np.repeat(full_video[-1:], len(full_video) - 1, axis=0)])
    cheat = write_mp4(tmp_path / "cheat.mp4", end_state)
    for video in (path, cheat):
        from_file, full = verifier.score(inst, video), verifier.score(inst, read_video(video))
        assert from_file.success == full.success and from_file.reason == full.reason
        for key in ("exact_match", "precision_rate", "success_lenient"):
            assert from_file.metrics[key] == full.metrics[key], key
        assert score_video(inst, video).success == full.success
    stretched = write_mp4(tmp_path / "wide.mp4", resize(full_video, (160, 704)))  # (h, w): 4.4x too wide
    row = score_video(inst, stretched)
    assert row.success, row.reason  # decoded whole, then judged un-stretched (verifiers/framing.py)
    with pytest.raises(UserError, match="aspect ratios"):  # asked for the working size only, it says why not
        work_video.read_work_video(stretched, inst.spec)
    assert work_video.read_work_video(stretched, inst.spec, whole_if_unfit=True).shape[1:3] == (160, 704)
    noise = np.random.default_rng(0).integers(0, 256, (8, 160, 704, 3), dtype=np.uint8)
    row = score_video(inst, write_mp4(tmp_path / "noise.mp4", noise))  # shows the puzzle nowhere
    assert not row.success and row.reason.startswith("cannot judge"), row.reason


def test_downscaled_decode_is_the_area_average_of_the_full_decode(large_mp4):
    _, path = large_mp4
    full = read_video(path)
    small = read_video(path, downscale=4)
    assert video_size(path) == full.shape[1:3] == (704, 704)
    assert small.shape == (len(full), 176, 176, 3) and small.dtype == np.uint8
    expected = np.stack([cv2.resize(f, (176, 176), interpolation=cv2.INTER_AREA) for f in full])
    # The decoder averages in YUV and scales chroma on its own: close, not bit-equal.
    assert np.abs(small.astype(int) - expected).mean() < 2.0
    assert read_video(path, max_frames=3, downscale=2).shape == (3, 352, 352, 3)
    with pytest.raises(ValueError):
        read_video(path, downscale=0)


def test_work_decode_scores_the_ground_truth_solved_at_the_working_size(large_mp4):
    inst, path = large_mp4
    work = work_video.read_work_video(path, inst.spec)
    factor = work_video.working_factor(inst.spec, 704, 704)
    assert factor > 1 and work.shape[1:3] == (704 // factor, 704 // factor)
    assert inst.spec["agent"]["size_px"] * work.shape[2] / inst.spec["image_size"][1] >= 8
    score = MazeReferenceVerifier().score(inst, work)
    assert score.success and score.metrics["exact_match"] == 1.0, score.reason


def test_shrink_is_the_block_mean_to_one_grey_level():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (3, 101, 67, 3), dtype=np.uint8)
    for factor in (2, 3, 4, 6):
        out = work_video.shrink(video, factor)
        h, w = 101 // factor, 67 // factor
        blocks = video[:, : h * factor, : w * factor].reshape(3, h, factor, w, factor, 3).mean(axis=(2, 4))
        assert out.shape == (3, h, w, 3)
        assert np.abs(out - blocks).max() <= 1.0 + 1e-9


def test_drift_is_undone_and_a_steady_video_is_left_alone():
    inst = get_task("maze/grid").generate(0, "easy")
    video = inst.solution_video()
    frames, gains = work_video.undo_brightness_drift(video)
    assert frames is video and (gains == 1.0).all()
    drifted = brightness_drift(video, 0.25)
    frames, gains = work_video.undo_brightness_drift(drifted)
    expected = 1.0 - 0.25 * np.arange(len(video)) / (len(video) - 1)
    late = expected < 0.97
    assert np.abs(gains[late, 0] - expected[late]).max() < 0.01
    assert np.abs(frames[-1].astype(int) - video[-1]).mean() < 2.0


def test_common_ratio_is_the_median_near_the_peak():
    rng = np.random.default_rng(1)
    rows = []
    for shared in (0.8, 1.0, 1.17):
        row = np.concatenate([shared + rng.normal(0, 0.004, 700), rng.uniform(0.5, 1.5, 300)])
        rows.append(row)
    rows.append(rng.uniform(0.5, 1.5, 1000))  # nothing shared
    ratios = np.asarray(rows, np.float32)
    found = work_video._common_ratio(ratios)
    for k, row in enumerate(rows[:3]):
        counts, edges = np.histogram(row.astype(np.float32), bins=np.linspace(0.5, 1.5, 101))
        peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
        near = row[np.abs(row - peak) <= 0.02]
        assert abs(found[k] - np.median(near)) < 2e-4
    assert np.isnan(found[3])


@pytest.mark.parametrize("count, threads", [(5, 1), (100, 1), (100, 3), (70, 2)])
def test_colour_prefilter_finds_exactly_the_labelled_pixels(count, threads, monkeypatch):
    from gen_reason.verifiers import parallel

    monkeypatch.setattr(parallel, "workers", lambda: threads)  # 100 frames, 3 threads: parts of 33-34 frames
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (count, 40, 48, 3), dtype=np.uint8)
    frames[:, 10:20, 10:20] = (220, 30, 30)
    frames[:, 25:30, 30:40] = (230, 180, 40)
    lut = colours.build_lut({1: np.array([220.0, 30, 30]), 2: np.array([230.0, 180, 40])},
                          [np.array([255.0, 255, 255]), np.array([20.0, 20, 20])])
    idx, labels = colours.target_pixels(frames, lut)
    dense = lut[colours._quantise(frames)].ravel()
    assert np.array_equal(idx, np.flatnonzero(dense)) and np.array_equal(labels, dense[idx])


def test_sparse_components_match_dense_labelling():
    rng = np.random.default_rng(3)
    mask = rng.random((4, 30, 33)) < 0.15
    mask[1, 5:12, 5:9] = True
    mask[2, 29, :] = True  # a component on the last row must not join frame 3's first row
    mask[3, 0, :] = True
    got = colours.components(np.flatnonzero(mask), mask.shape)
    for k in range(len(mask)):
        n, _, stats, cents = cv2.connectedComponentsWithStats(mask[k].astype(np.uint8), connectivity=8)
        areas, centroids = got[k]
        order = np.lexsort((centroids[:, 1], centroids[:, 0], areas))
        expected = np.lexsort((cents[1:, 1], cents[1:, 0], stats[1:, cv2.CC_STAT_AREA]))
        assert len(areas) == n - 1
        assert np.array_equal(areas[order], stats[1:, cv2.CC_STAT_AREA][expected])
        assert np.allclose(centroids[order], cents[1:][expected])


def test_scene_check_masks_equal_the_whole_image_tests():
    from gen_reason.verifiers.scene import _fill_disc, _fill_square

    rng = np.random.default_rng(3)
    h, w = 37, 53
    yy, xx = np.mgrid[:h, :w]
    for _ in range(200):
        centre = rng.uniform(-12, 65, 2)
        radius = rng.uniform(0.0, 14.0)
        disc = np.zeros((h, w), bool)
        _fill_disc(disc, centre, radius)
        np.testing.assert_array_equal(disc, (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius ** 2)
        square = np.zeros((h, w), bool)
        _fill_square(square, centre, radius)
        np.testing.assert_array_equal(square, (np.abs(xx - centre[0]) <= radius) & (np.abs(yy - centre[1]) <= radius))


def test_red_mask_in_uint8_equals_the_widened_formula():
    from gen_reason.verifiers.draw import red_mask

    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (4, 31, 29, 3), dtype=np.uint8)
    frames[0, :5, :5] = (200, 120, 131)  # near the margin on both sides
    wide = frames.astype(np.int32)
    for red_min, margin in ((150, 70), (0, 0), (0, 1), (255, 1), (256, 5), (100, -20), (200, 255)):
        expected = (wide[..., 0] >= red_min) & (wide[..., 0] - wide[..., 1:].max(-1) >= margin)
        np.testing.assert_array_equal(red_mask(frames, red_min, margin), expected)
        np.testing.assert_array_equal(red_mask(frames[1], red_min, margin), expected[1])  # one frame


def test_morphology_on_the_tall_image_equals_the_per_frame_calls():
    from gen_reason.verifiers.draw import _KERNEL3, _morph_frames

    rng = np.random.default_rng(5)
    masks = rng.random((6, 17, 13)) < 0.5
    masks[2] = True  # a full frame: its erosion must not bleed into its neighbours
    masks[3] = False
    for op, border in ((cv2.erode, True), (cv2.dilate, False)):
        expected = np.stack([op(m.astype(np.uint8), _KERNEL3).astype(bool) for m in masks])
        np.testing.assert_array_equal(_morph_frames(masks, op, border), expected)


def _draw_sequence_per_frame(spec, video):
    """The draw referee's sequence rules written as the plain per-frame loop."""
    from gen_reason.verifiers.draw import _KERNEL3, red_mask, wall_core_mask

    t_count, h, w = video.shape[:3]
    s = ((w / spec["image_size"][1]) * (h / spec["image_size"][0])) ** 0.5
    erase_min = 2.0 * (spec["draw"]["line_width"] * s) ** 2
    core = wall_core_mask(spec, (h, w), 1.0)
    reds = red_mask(video)
    touch = [int(np.count_nonzero(reds[t] & core)) for t in range(t_count)]
    drawn = cv2.erode(reds[0].astype(np.uint8), _KERNEL3).astype(bool)
    erased, violation = [0], (0, "wall") if touch[0] > 0 else None
    for t in range(1, t_count):
        lost = int(np.count_nonzero(drawn & ~cv2.dilate(reds[t].astype(np.uint8), _KERNEL3).astype(bool)))
        erased.append(lost)
        if violation is None:
            if touch[t] > 0:
                violation = (t, "wall")
            elif lost > max(erase_min, 0.05 * np.count_nonzero(drawn)):
                violation = (t, "erased")
        drawn |= cv2.erode(reds[t].astype(np.uint8), _KERNEL3).astype(bool)
    return touch, erased, violation


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("at", [9, 38])  # damage in the first chunk, and across the second chunk's end
@pytest.mark.parametrize("damage", ["none", "wall", "erase", "both"])
def test_whole_video_draw_rules_equal_the_per_frame_loop(damage, at, threads, monkeypatch):
    from gen_reason.verifiers import parallel
    from gen_reason.verifiers.draw import score_draw

    monkeypatch.setattr(parallel, "workers", lambda: threads)  # 60 frames: chunks 0-19, 20-39, 40-59
    inst = get_task("maze/draw").generate(3, "medium")
    video = inst.solution_video(60).copy()
    spec = inst.spec
    if damage in ("wall", "both"):
        x0, y0, x1, y1 = spec["draw"]["walls"][len(spec["draw"]["walls"]) // 3]
        cx, cy = int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2))
        video[at + 6, cy - 3: cy + 4, cx - 3: cx + 4] = spec["agent"]["color"]
    if damage in ("erase", "both"):
        video[at:] = np.where(video[at:] == video[at - 1:at], video[at:], inst.first_frame)  # later strokes vanish
        video[at + 3:] = inst.first_frame
    score = score_draw(inst, video)
    touch, erased, violation = _draw_sequence_per_frame(spec, video)
    assert score.trace["wall_touch_px"] == touch
    assert score.trace["erased_px"] == erased
    assert score.trace["red_px"] == [int(np.count_nonzero(red_mask_frame)) for red_mask_frame in _reds(video)]
    got = score.trace["first_violation"]
    assert (None if got is None else (got["frame"], got["rule"])) == violation
    assert (violation is None) == (damage == "none")


def _reds(video):
    from gen_reason.verifiers.draw import red_mask

    return red_mask(video)


def _check_scene_per_frame(track_, spec, agent_path=None, diff_threshold=60, min_blob_cells=0.25):
    """The scene check written as the plain per-sampled-frame loop (blur, absdiff, channel
    max, opening and components on each frame; stops at the first frame with a redraw)."""
    from gen_reason.verifiers.scene import _describe_change, _fill_disc, _fill_square

    work = track_.work
    frames = work.frames
    t, h, w = frames.shape[:3]
    step_w = float(spec["step_px"]) * work.mean_scale
    agent_r = 0.5 * float(spec["agent"]["size_px"]) * work.mean_scale * 1.5 + 3
    sample = np.unique(np.linspace(1, t - 1, num=min(t - 1, 24)).round().astype(int)) if t > 1 else []
    first = cv2.blur(frames[0], (3, 3))
    nodes = np.asarray(spec["nodes"], float)
    objects = [(track_.agent.positions, nodes[int(spec["start"])], agent_r)]
    if spec.get("box") and track_.box is not None:
        box_r = 0.5 * float(spec["box"].get("size_px", spec["step_px"])) * work.mean_scale * 1.5 + 3
        objects.append((track_.box.positions, nodes[int(spec["box"]["start"])], box_r))
    trail_r = 0.75 * step_w + 2
    gx0, gy0, gx1, gy1 = spec["goal_box"]
    goal_xy = np.array([(gx0 + gx1) / 2, (gy0 + gy1) / 2])
    trail_mask = np.zeros((h, w), bool)
    for k in sample:
        diff = np.abs(cv2.blur(frames[k], (3, 3)).astype(int) - first).max(-1) > diff_threshold
        allowed = np.zeros((h, w), bool)
        for positions, start_xy, radius in objects:
            pts = [start_xy]
            if not np.isnan(positions[k, 0]):
                pts.append(positions[k])
            else:
                prev = np.flatnonzero(~np.isnan(positions[:k, 0]))
                if len(prev):
                    pts.append(positions[prev[-1]])
            for p in pts:
                _fill_disc(allowed, work.to_work(p), radius)
        if spec.get("trail"):
            for p in track_.agent.positions[:k + 1]:
                if not np.isnan(p[0]):
                    _fill_square(trail_mask, work.to_work(p), trail_r)
            if agent_path is not None:
                for node, entered in zip(agent_path.node_path, agent_path.node_frames):
                    if entered <= k:
                        _fill_square(trail_mask, work.to_work(nodes[int(node)]), trail_r)
            allowed |= trail_mask
        p = track_.agent.positions[k]
        if not np.isnan(p[0]) and np.linalg.norm(p - goal_xy) <= float(spec["step_px"]):
            c0 = work.to_work(np.array([gx0, gy0], float))
            c1 = work.to_work(np.array([gx1, gy1], float))
            allowed[max(0, int(c0[1]) - 1): int(c1[1]) + 2, max(0, int(c0[0]) - 1): int(c1[0]) + 2] = True
        changed = cv2.morphologyEx((diff & ~allowed).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, labels, stats, cents = cv2.connectedComponentsWithStats(changed, connectivity=8)
        if n <= 1:
            continue
        j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[j, cv2.CC_STAT_AREA] >= min_blob_cells * step_w ** 2:
            where = work.to_spec(cents[j])
            what = _describe_change(frames[0], frames[k], labels == j, where, int(k), track_, spec)
            return [{"rule": "maze_redrawn", "frame": int(k),
                     "detail": f"the scene changed at frame {k} around ({where[0]:.0f}, {where[1]:.0f}) px "
                               f"({stats[j, cv2.CC_STAT_AREA] / step_w ** 2:.1f} cells): {what}"}]
    return []


def _scene_damage(inst, video, kind, rng):
    """A ground-truth video with part of the scene repainted from some frame on."""
    out = video.copy()
    t, h, w = out.shape[:3]
    start = int(rng.integers(1, t - 1))
    size = int(rng.integers(3, max(4, h // 6)))
    y, x = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
    if kind == "blob":
        out[start:, y:y + size, x:x + size] = rng.integers(0, 256, 3)
    elif kind == "flash":  # one frame only, at the image's edge
        out[start, :size, :size] = 255 - out[start, :size, :size]
    elif kind == "speck":  # thin noise the opening removes
        out[start:, y, x:x + size] = 255 - out[start:, y, x:x + size]
    elif kind == "two":  # two changes in one frame: the larger is reported
        out[start:, y:y + size, x:x + size] = (255, 0, 255)
        out[start:, :size // 2 + 2, w - size // 2 - 2:] = (0, 255, 255)
    elif kind == "goal":
        x0, y0, x1, y1 = [int(v) for v in inst.spec["goal_box"]]
        out[start:, y0:y1, x0:x1] = out[0, 0, 0]
    return out


@pytest.mark.parametrize("task", [("maze/grid", {}), ("maze/irregular", {}), ("maze/3d", {}),
                                  ("maze/trapfield", {"trail": True}), ("maze/sokoban", {}),
                                  ("maze/grid", {"trail": True, "skin": "tiny", "cell_px": 9, "margin": 0})])
def test_scene_check_on_all_sampled_frames_equals_the_per_frame_loop(task):
    """Ground truth and repainted scenes (blobs, a one-frame flash at the edge, thin specks,
    two changes at once, the goal erased), with and without the walked path, at two
    thresholds: the same verdict, frame and reason as the per-frame loop."""
    from gen_reason.verifiers.rules import check_rules
    from gen_reason.verifiers.scene import check_scene

    name, options = task
    rng = np.random.default_rng(11)
    found = 0
    for seed in range(1):
        inst = get_task(name, **options).generate(seed, "medium")
        video = inst.solution_video()
        for kind in ("none", "blob", "flash", "speck", "two", "goal", "blob"):
            bad = video if kind == "none" else _scene_damage(inst, video, kind, rng)
            tr = track.track_objects(bad, inst.spec)
            agent = check_rules(tr, inst.spec, check_scene_changes=False).agent
            for path in (None, agent):
                for threshold in (60, 20):
                    got = check_scene(tr, inst.spec, path, diff_threshold=threshold)
                    assert got == _check_scene_per_frame(tr, inst.spec, path, diff_threshold=threshold), (name, kind)
                    found += bool(got)
    assert found >= 8  # the damage is seen, so the redraw branch is compared too


@pytest.mark.parametrize("h", [1, 2, 3, 17])
def test_scene_diffs_of_the_tall_image_equal_the_per_frame_blur(h):
    from gen_reason.verifiers.scene import _scene_diffs

    rng = np.random.default_rng(h)
    frames = rng.integers(0, 256, (9, h, 13, 3), dtype=np.uint8)
    sample = np.array([1, 2, 5, 8])
    for threshold in (0, 40, 200):
        first = cv2.blur(frames[0], (3, 3)).astype(int)
        expected = np.stack([np.abs(cv2.blur(frames[k], (3, 3)).astype(int) - first).max(-1) > threshold
                             for k in sample])
        got = _scene_diffs(frames, sample, threshold)
        assert got.shape == (len(sample), h + 1, 13) and not got[:, h].any()
        np.testing.assert_array_equal(got[:, :h].astype(bool), expected)


def test_compression_specks_never_move_the_track_and_split_pieces_still_merge():
    """Blobs below both of the follower's area tests are dropped before following; a piece
    of the object above them (a split by compression) is still merged with the rest, and
    a second object-sized blob is still a duplicate."""
    size_w, step_w = 10.0, 16.0
    area = 0.45 * size_w ** 2  # what the follower expects; frame 0 shows exactly this
    work = work_video.WorkVideo(frames=np.zeros((6, 64, 64, 3), np.uint8), scale=(1.0, 1.0), source_size=(64, 64))
    start = np.array([20.0, 20.0])
    path = [start + (k * 3.0, 0.0) for k in range(6)]
    rng = np.random.default_rng(0)

    def follow(extra):
        comps = []
        for k, p in enumerate(path):
            areas, cents = [area], [p]
            for a, c in extra(k, p):
                areas.append(a)
                cents.append(c)
            comps.append((np.asarray(areas, float), np.asarray(cents, float)))
        return track._follow(comps, work.frames, start, size_w, step_w, work, "agent", [])

    clean = follow(lambda k, p: [])
    # (frame 0 measures the object's own area from every blob near the start: no specks there)
    specks = follow(lambda k, p: [(1.0, p + rng.uniform(-4, 4, 2)) for _ in range(3)] + [(1.0, (60.0, 60.0))]
                    if k else [])
    np.testing.assert_array_equal(specks.positions, clean.positions)
    np.testing.assert_array_equal(specks.confidence, clean.confidence)
    piece = 0.2 * area  # above the speck limit (0.08 of the area), below the object test (0.3)
    split = follow(lambda k, p: [(piece, p + (3.0, 0.0))] if k else [])
    expected = (area * path[3] + piece * (path[3] + (3.0, 0.0))) / (area + piece)
    np.testing.assert_allclose(split.positions[3], expected)
    twin = follow(lambda k, p: [(area, (55.0, 55.0)), (1.0, (40.0, 40.0))] if k == 4 else [])
    assert twin.duplicated.tolist() == [False, False, False, False, True, False]
