"""tangram specifics: the seven pieces, silhouettes built from valid poses, the scatter,
the piece-by-piece ground-truth video and the solution checker."""

import json
import random

import cv2
import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.puzzles import get_task
from gen_reason.puzzles.tangram import (
    PIECES, SHAPES, classic_square, convex_intersection_area, convex_overlap, grow_silhouette, normalize_pose,
    piece_vertices, polygon_area, rasterize, silhouette_shape,
)

DIFFICULTIES = ("easy", "medium", "hard")


def _color_px(frame, color, tol=30):
    return int((np.abs(frame.astype(int) - np.array(color)).sum(axis=-1) <= tol).sum())


def test_piece_set_is_the_classic_seven():
    areas = {name: polygon_area(SHAPES[shape]) for name, shape in PIECES}
    assert sorted(areas.values()) == pytest.approx([1, 1, 2, 2, 2, 4, 4])
    assert sum(areas.values()) == pytest.approx(16)
    for shape, verts in SHAPES.items():
        assert verts.mean(axis=0) == pytest.approx([0, 0], abs=1e-12)  # centred on the centroid


def test_classic_square_tiles_the_4x4_square():
    poses = classic_square()
    shape_of = dict(PIECES)
    polys = [piece_vertices(shape_of[n], *poses[n]) for n, _ in PIECES]
    for i, a in enumerate(polys):
        for b in polys[i + 1:]:
            assert convex_intersection_area(a, b) < 1e-9 and not convex_overlap(a, b)
    solidity, holes, outline = silhouette_shape(polys)
    assert holes == 0 and solidity > 0.99
    assert len(outline) == 1 and polygon_area(outline[0]) == pytest.approx(16)
    assert sorted(map(tuple, np.round(outline[0], 6))) == [(0, 0), (0, 4), (4, 0), (4, 4)]


def test_overlap_tests_agree_on_random_pairs():
    rng = random.Random(0)
    for _ in range(300):
        a = piece_vertices(rng.choice(list(SHAPES)), rng.randrange(-6, 7) / 2, rng.randrange(-6, 7) / 2,
                           45 * rng.randrange(8), rng.random() < 0.5)
        b = piece_vertices(rng.choice(list(SHAPES)), rng.randrange(-6, 7) / 2, rng.randrange(-6, 7) / 2,
                           45 * rng.randrange(8), rng.random() < 0.5)
        assert convex_overlap(a, b) == (convex_intersection_area(a, b) > 1e-9)


def test_normalize_pose_keeps_the_polygon():
    for shape in SHAPES:
        for rot in (0, 30, 45, 135, 270):
            for flip in (False, True):
                r2, f2 = normalize_pose(shape, rot, flip)
                assert 0 <= r2 < {"square": 90, "parallelogram": 180}.get(shape, 360)
                assert f2 == (flip and shape == "parallelogram")
                a = piece_vertices(shape, 0, 0, rot, flip)
                b = piece_vertices(shape, 0, 0, r2, f2)
                assert all(np.abs(b - v).sum(axis=1).min() < 1e-6 for v in a)


@pytest.mark.parametrize("compact", [True, False])
def test_grown_silhouettes_are_valid(compact):
    rng = random.Random(3)
    shape_of = dict(PIECES)
    for _ in range(5):
        poses = grow_silhouette(rng, compact)
        assert poses is not None and sorted(poses) == sorted(n for n, _ in PIECES)
        polys = [piece_vertices(shape_of[n], *poses[n]) for n, _ in PIECES]
        for i, a in enumerate(polys):
            for b in polys[i + 1:]:
                assert convex_intersection_area(a, b) < 1e-6
        mask = rasterize(polys, (400, 400), 20, (200, 200)).astype(np.uint8)
        assert cv2.connectedComponents(mask, connectivity=4)[0] == 2  # one piece of figure (+ background)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_same_seed_same_bytes(difficulty):
    a = get_task("tangram").generate(9, difficulty)
    b = get_task("tangram").generate(9, difficulty)
    assert a.first_frame.tobytes() == b.first_frame.tobytes()
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
    assert a.solution_video(49).tobytes() == b.solution_video(49).tobytes()
    assert get_task("tangram").generate(10, difficulty).spec["layout"] != a.spec["layout"]


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_solution_is_legal_and_covers_the_silhouette(difficulty):
    task = get_task("tangram")
    for seed in range(4):
        inst = task.generate(seed, difficulty)
        ok, reason = task.check_solution(inst, inst.solution)
        assert ok, f"seed {seed}: {reason}"
        unit = inst.spec["unit_px"]
        area = sum(polygon_area(np.asarray(p)) for p in inst.spec["target"]["polygons"])
        assert area == pytest.approx(16 * unit * unit, rel=1e-3)
        json.dumps(inst.spec), json.dumps(inst.solution)
        assert [p["piece"] for p in inst.solution["pieces"]] == [n for n, _ in PIECES]


def test_difficulty_shapes():
    task = get_task("tangram")
    shape_of = dict(PIECES)
    easy = task.generate(1, "easy")
    (outline,) = easy.spec["target"]["polygons"]
    assert len(outline) == 4  # the square, turned by a multiple of 90 degrees
    for difficulty, compact in (("medium", True), ("hard", False)):
        for seed in range(3):
            inst = task.generate(seed, difficulty)
            unit = inst.spec["unit_px"]
            polys = [piece_vertices(shape_of[p["piece"]], p["x"], p["y"], p["rotation_deg"], p["flip"], unit)
                     for p in inst.solution["pieces"]]
            solidity, _, _ = silhouette_shape(polys)
            assert (solidity >= 0.79) if compact else (solidity < 0.81)
            h, w = inst.spec["image_size"]
            background = (~rasterize(polys, (h, w))).astype(np.uint8)
            assert cv2.connectedComponents(background, connectivity=4)[0] == 2  # no holes
    hard_turns = {task.generate(s, "hard").solution["pieces"][0]["rotation_deg"] % 45 for s in range(6)}
    assert hard_turns != {0.0}  # hard silhouettes turn by any whole degree


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_first_frame_shows_silhouette_and_scattered_pieces(difficulty):
    task = get_task("tangram")
    inst = task.generate(4, difficulty)
    frame, spec = inst.first_frame, inst.spec
    unit = spec["unit_px"]
    assert list(frame.shape[:2]) == spec["image_size"]
    # the silhouette is fully visible: nothing covers it yet
    assert _color_px(frame, spec["colors"]["silhouette"], 10) == pytest.approx(16 * unit * unit, rel=0.03)
    h, w = spec["image_size"]
    target = rasterize(spec["target"]["polygons"], (h, w))
    for piece in spec["pieces"]:
        expected = piece["area_units"] * unit * unit
        assert _color_px(frame, piece["color"]) == pytest.approx(expected, rel=0.1), piece["name"]
        s = piece["start"]
        verts = piece_vertices(piece["shape"], s["x"], s["y"], s["rotation_deg"], s["flip"], unit)
        assert verts.min() >= 0 and verts[:, 0].max() <= w and verts[:, 1].max() <= h
        assert not np.any(rasterize([verts], (h, w)) & target), piece["name"]
        assert s["flip"] == next(p for p in inst.solution["pieces"] if p["piece"] == piece["name"])["flip"]
    colors = [tuple(p["color"]) for p in spec["pieces"]]
    assert len(set(colors)) == 7


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_solution_video_moves_pieces_one_by_one(difficulty):
    task = get_task("tangram")
    inst = task.generate(2, difficulty)
    video = inst.solution_video(49)
    assert video.shape == (49, *inst.first_frame.shape)
    assert np.array_equal(video[0], inst.first_frame)
    assert np.array_equal(video[-1], task.render_at(inst, 7.0))
    spec = inst.spec
    # solved: the gray silhouette is covered (only anti-aliased seams remain)
    assert _color_px(video[-1], spec["colors"]["silhouette"], 10) < 0.01 * 16 * spec["unit_px"] ** 2
    # during piece k's move the earlier pieces are home and the later ones still at their start
    mid = task.render_at(inst, 2.5)
    for k, piece in enumerate(spec["pieces"]):
        pose = piece["start"] if k > 2 else inst.solution["pieces"][k]
        if k == 2:
            continue
        x, y = int(round(pose["x"])), int(round(pose["y"]))
        # the moving piece (drawn on top) may pass over a resting one
        seen = [np.abs(mid[y, x].astype(int) - color).max() for color in (piece["color"], spec["pieces"][2]["color"])]
        assert min(seen) <= 40, piece["name"]  # 40: an anti-aliased edge may cross the pixel


def test_check_solution_rejects_bad_answers():
    task = get_task("tangram")
    inst = task.generate(0, "medium")
    pieces = inst.solution["pieces"]
    moved = [dict(p) for p in pieces]
    moved[3]["x"] += inst.spec["unit_px"]
    ok, reason = task.check_solution(inst, {"pieces": moved})
    assert not ok
    stacked = [dict(p) for p in pieces]
    stacked[1] = {**stacked[0], "piece": stacked[1]["piece"]}  # two large triangles in one place
    ok, reason = task.check_solution(inst, {"pieces": stacked})
    assert not ok and "overlap" in reason
    assert not task.check_solution(inst, {"pieces": pieces[:-1]})[0]
    assert not task.check_solution(inst, {"pieces": [{**pieces[0], "piece": "triangle"}] + pieces[1:]})[0]
    assert not task.check_solution(inst, "no")[0]
    # identical pieces may trade places
    swapped = [dict(p) for p in pieces]
    swapped[0], swapped[1] = {**pieces[1], "piece": pieces[0]["piece"]}, {**pieces[0], "piece": pieces[1]["piece"]}
    assert task.check_solution(inst, {"pieces": swapped})[0]


def test_skins_and_bad_configs():
    base = get_task("tangram").generate(3, "medium")
    dark = get_task("tangram", skin="dark").generate(3, "medium")
    assert dark.solution == base.solution and dark.canonical_hash == base.canonical_hash
    assert not np.array_equal(dark.first_frame, base.first_frame)
    with pytest.raises(UserError):
        get_task("tangram", width=10)
    with pytest.raises(UserError):
        get_task("tangram", min_unit_px=40, max_unit_px=20)
    with pytest.raises(UserError):
        get_task("tangram", width=200, height=150, min_unit_px=30).generate(0, "hard")
    small = get_task("tangram", width=320, height=240, max_unit_px=18).generate(0, "medium")
    assert small.first_frame.shape == (240, 320, 3)


