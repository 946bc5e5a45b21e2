"""VR-Bench levels in sprite skins: the player and box are found from the level's own
first frame, whatever they look like.

The levels (``data/vrbench_skins``, made by VR-Bench's generator) draw the player and the
box as sprites with no colour of their own; the referee follows them by their picture.
Their ground truth passes, at any speed, and the usual cheats still fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gen_reason.errors import UserError
from gen_reason.verifiers.maze import MazeRuleVerifier
from gen_reason.verifiers.vrbench import load_level
from gen_reason.video import read_video

DATA = Path(__file__).parent / "data" / "vrbench_skins"
LEVELS = sorted(DATA.glob("*/*/easy/states/easy_0001.json"))
RULES = MazeRuleVerifier()


def level(state: Path):
    """The instance and its ground-truth video."""
    return load_level(state), read_video(state.parent.parent / "videos" / (state.stem + ".mp4"))


def test_the_levels_are_there():
    assert {p.parts[-5] for p in LEVELS} == {"maze", "sokoban"}


def test_sprites_without_a_colour_of_their_own_are_followed_by_their_picture():
    """maze/4's girl and sokoban/3's crate share every colour with the scene."""
    looks = {"/".join(p.parts[-5:-3]): level(p)[0].spec for p in LEVELS}
    assert looks["maze/4"]["agent"].get("track") == "sprite"
    assert looks["sokoban/3"]["box"].get("track") == "sprite"


@pytest.mark.parametrize("state", LEVELS, ids=lambda p: "/".join(p.parts[-5:-3]))
@pytest.mark.parametrize("keep", [1, 3])
def test_ground_truth_passes_at_any_speed(state, keep):
    inst, video = level(state)
    picks = np.unique(np.append(np.arange(0, len(video), keep), len(video) - 1))
    score = RULES.score(inst, video[picks])
    assert score.success, score.reason


@pytest.mark.parametrize("state", LEVELS, ids=lambda p: "/".join(p.parts[-5:-3]))
def test_end_state_only_fails(state):
    inst, video = level(state)
    cheat = np.concatenate([video[:1], np.repeat(video[-1:], 12, axis=0)])
    score = RULES.score(inst, cheat)
    assert not score.success
    assert score.trace["first_violation"]["rule"] in ("end_state_only", "teleport", "box_teleport"), score.reason


@pytest.mark.parametrize("state", LEVELS, ids=lambda p: "/".join(p.parts[-5:-3]))
def test_stopping_halfway_fails(state):
    inst, video = level(state)
    score = RULES.score(inst, video[: len(video) // 2])
    assert not score.success and "did not reach the goal" in score.reason, score.reason


def test_a_state_without_a_field_is_one_clear_error(tmp_path):
    """A state missing a field of the UnifiedState format (here its render settings) is a
    UserError naming the file and the field, not a KeyError."""
    source = LEVELS[0]
    states, images = tmp_path / "easy" / "states", tmp_path / "easy" / "images"
    states.mkdir(parents=True)
    images.mkdir()
    shutil.copy(source.parent.parent / "images" / (source.stem + ".png"), images)
    data = json.loads(source.read_text())
    del data["render"]
    (states / source.name).write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"lacks the field 'render'") as err:
        load_level(states / source.name)
    assert str(states / source.name) in str(err.value)
