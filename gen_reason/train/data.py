"""Training data for the embedded model: maze solution videos made on the fly.

Every batch is a pure function of ``(data seed, step)``: which maze sizes, which puzzle
seeds. So a resumed run sees exactly the batches it would have seen, with no data state
to save beyond the step number. Rendering a long video costs about as much CPU as a
training step, so a run may reuse videos: :class:`ReplayStream` keeps the last
``capacity`` videos, makes ``fresh_per_step`` new ones each step and draws each batch
from the pool; the pool is itself a pure function of the step, rebuilt on resume. Training puzzle seeds are drawn from
``[0, TRAIN_SEED_LIMIT)``; validation and evaluation use seeds from
``HELD_OUT_SEED_START`` up, which training never draws.

Mazes are ``maze/grid`` with the ``tiny`` skin, thin 1-px walls and a trail, with the
largest room size that fits the working resolution; the (odd-sized) image is padded at
the bottom and right with white to the square working size, as the pipeline pads its
input at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from gen_reason.models.embedded_parts import pad_image, pad_video
from gen_reason.puzzles.instance import Instance
from gen_reason.puzzles.registry import get_task

TRAIN_SEED_LIMIT = 10**6
HELD_OUT_SEED_START = 10**6
PAD_COLOR = (255, 255, 255)  # the tiny skin's background


def maze_geometry(rooms: int, resolution: int = 32) -> dict:
    """Room size and margin so an ``rooms x rooms`` thin-wall maze fills ``resolution`` px.

    With 1-px walls an ``n``-room side is ``n * cell + n + 1 + 2 * margin`` px: the
    largest ``cell`` that fits, then the margin that centres it (the image is at most
    ``resolution`` px; odd sizes are padded by the caller).
    """
    cell = (resolution - (rooms + 1)) // rooms
    if cell < 2:
        raise ValueError(f"a {rooms}x{rooms} maze does not fit {resolution} px with rooms of >= 2 px")
    side = rooms * cell + rooms + 1
    return {"cell_px": cell, "wall_px": 1, "margin": (resolution - side) // 2}


def maze_task(rooms: int, resolution: int = 32, **timing):
    """The ``maze/grid`` task (tiny skin, thin walls, trail) for ``rooms x rooms`` mazes.

    ``timing`` may set ``frames_per_step`` / ``hold_frames`` (ground-truth video timing);
    they change no puzzle and no first frame.
    """
    return get_task("maze/grid", skin="tiny", wall_style="thin", trail=True, **maze_geometry(rooms, resolution),
                    **timing)


def maze_instance(rooms: int, seed: int, resolution: int = 32) -> Instance:
    """One ``rooms x rooms`` maze instance at the embedded model's resolution."""
    return maze_task(rooms, resolution).generate(seed, f"{rooms}x{rooms}")


def held_out_instances(rooms: int, count: int, resolution: int = 32, offset: int = 0) -> list[Instance]:
    """``count`` evaluation mazes with seeds ``HELD_OUT_SEED_START + offset + i`` (never trained on)."""
    task = maze_task(rooms, resolution)
    start = HELD_OUT_SEED_START + offset
    return [task.generate(start + i, f"{rooms}x{rooms}") for i in range(count)]


def fit_length(video: np.ndarray, num_frames: int) -> np.ndarray:
    """Cut ``video`` to ``num_frames`` or hold its last frame until it is that long."""
    if len(video) >= num_frames:
        return video[:num_frames]
    return np.concatenate([video, np.repeat(video[-1:], num_frames - len(video), axis=0)])


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """``(F, H, W, 3)`` uint8 -> ``[3, F, H, W]`` float in ``[-1, 1]``."""
    return torch.from_numpy(video).permute(3, 0, 1, 2).float() / 127.5 - 1.0


@dataclass(frozen=True)
class MazeVideoData:
    """Which mazes a run trains on and how each batch is drawn.

    ``sizes`` / ``size_weights``: rooms per side and their sampling weights.
    ``frames_per_move``: ``None`` spreads the whole solution over ``num_frames`` (the
    agent's speed depends on the path length); a number moves the agent one room per
    that many frames from frame 0, then holds the solved state (longer solutions are
    cut at ``num_frames``), so where the agent is at frame ``k`` needs no knowledge of
    the path's length.
    """

    sizes: Sequence[int] = (3, 4, 5)
    size_weights: Sequence[float] = (0.15, 0.3, 0.55)
    num_frames: int = 16
    resolution: int = 32
    seed: int = 0
    frames_per_move: int | None = None

    def draw(self, step: int, batch_size: int) -> list[tuple[int, int]]:
        """The ``(rooms, puzzle seed)`` pairs of batch ``step``: a pure function of (seed, step)."""
        rng = np.random.default_rng([self.seed, step])
        weights = np.asarray(self.size_weights, float)
        rooms = rng.choice(np.asarray(self.sizes), size=batch_size, p=weights / weights.sum())
        seeds = rng.integers(0, TRAIN_SEED_LIMIT, size=batch_size)
        return [(int(r), int(s)) for r, s in zip(rooms, seeds)]

    def example(self, rooms: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The padded first frame ``(R, R, 3)`` and solution video ``(F, R, R, 3)``, uint8."""
        if self.frames_per_move is None:
            instance = maze_instance(rooms, seed, self.resolution)
            video = instance.solution_video(num_frames=self.num_frames)
        else:
            task = maze_task(rooms, self.resolution, frames_per_step=self.frames_per_move, hold_frames=0)
            instance = task.generate(seed, f"{rooms}x{rooms}")
            video = fit_length(task.solution_video(instance, None), self.num_frames)
        return pad_image(instance.first_frame, self.resolution, PAD_COLOR), pad_video(video, self.resolution, PAD_COLOR)

    def batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        """Batch ``step``: ``condition`` ``[B, 3, R, R]`` and ``video`` ``[B, 3, F, R, R]`` in ``[-1, 1]``."""
        videos = [self.example(rooms, seed)[1] for rooms, seed in self.draw(step, batch_size)]
        video = torch.stack([video_to_tensor(v) for v in videos])
        return {"condition": video[:, :, 0].clone(), "video": video}


class BatchStream(torch.utils.data.Dataset):
    """Batches ``first_step, first_step + 1, ...`` as a dataset, so a DataLoader worker makes them ahead."""

    def __init__(self, data: MazeVideoData, batch_size: int, first_step: int, last_step: int) -> None:
        self.data, self.batch_size = data, batch_size
        self.first_step, self.last_step = first_step, last_step

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.data.batch(self.first_step + index, self.batch_size)


class ReplayStream(torch.utils.data.Dataset):
    """Batches from a pool of the last ``capacity`` videos, ``fresh`` new ones per step.

    Video ``k`` (k = 0, 1, ...) is puzzle ``MazeVideoData.draw``-style from
    ``default_rng([seed, 0, k])`` and lives in slot ``k % capacity``. The pool starts
    with videos ``0 .. capacity - 1``; step ``s`` first adds videos
    ``capacity + s * fresh + i`` (``i < fresh``), then draws its batch's slots from
    ``default_rng([seed, 1, s])``. Steps must be asked for in order (one worker).
    """

    def __init__(self, data: MazeVideoData, batch_size: int, first_step: int, last_step: int, fresh: int,
                 capacity: int) -> None:
        self.data, self.batch_size, self.fresh, self.capacity = data, batch_size, fresh, capacity
        self.first_step, self.last_step = first_step, last_step
        self.pool: np.ndarray | None = None
        self.next_step = first_step

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def source(self, k: int) -> tuple[int, int]:
        """``(rooms, puzzle seed)`` of video ``k``."""
        rng = np.random.default_rng([self.data.seed, 0, k])
        weights = np.asarray(self.data.size_weights, float)
        rooms = int(rng.choice(np.asarray(self.data.sizes), p=weights / weights.sum()))
        return rooms, int(rng.integers(0, TRAIN_SEED_LIMIT))

    def _put(self, k: int) -> None:
        self.pool[k % self.capacity] = self.data.example(*self.source(k))[1]

    def _build(self, step: int) -> None:
        # The pool as it stands before step ``step`` adds its videos: the newest video of every slot.
        r = self.data.resolution
        self.pool = np.empty((self.capacity, self.data.num_frames, r, r, 3), np.uint8)
        newest = self.capacity + step * self.fresh - 1
        for k in range(newest - self.capacity + 1, newest + 1):
            self._put(k)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        step = self.first_step + index
        if self.pool is None or step != self.next_step:
            self._build(step)
        for i in range(self.fresh):
            self._put(self.capacity + step * self.fresh + i)
        self.next_step = step + 1
        slots = np.random.default_rng([self.data.seed, 1, step]).integers(0, self.capacity, size=self.batch_size)
        video = torch.from_numpy(self.pool[slots]).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        return {"condition": video[:, :, 0].clone(), "video": video}


def _quiet_worker(_: int) -> None:
    # One thread per data worker: the training process owns the cores.
    torch.set_num_threads(1)
    # Ctrl-C (SIGINT to the whole process group) or a kill of the group must reach the
    # training process alone: it finishes its step and checkpoints, then ends the worker.
    # A worker that died first would crash the run before that checkpoint.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batch_loader(data: MazeVideoData, batch_size: int, first_step: int, last_step: int, workers: int = 1,
                 fresh_per_step: int | None = None, pool_size: int = 1024):
    """An iterator over batches ``first_step .. last_step - 1`` (made in a worker process, or inline).

    ``fresh_per_step`` < ``batch_size`` reuses videos from a pool (:class:`ReplayStream`);
    ``None`` or ``batch_size`` makes every video fresh (:class:`BatchStream`).
    """
    if fresh_per_step is None or fresh_per_step >= batch_size:
        stream = BatchStream(data, batch_size, first_step, last_step)
    else:
        # The pool lives in one process and needs its steps in order: at most one worker.
        workers = min(workers, 1)
        stream = ReplayStream(data, batch_size, first_step, last_step, fresh_per_step, pool_size)
    if workers <= 0:
        return (stream[i] for i in range(len(stream)))
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, shuffle=False, num_workers=workers,
                                            prefetch_factor=4, worker_init_fn=_quiet_worker,
                                            multiprocessing_context="fork"))
