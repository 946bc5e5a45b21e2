"""A stand-in video model for run tests: answers with the puzzle's ground-truth video
(odd seeds stop halfway, so they fail), optionally slowly. Loaded by path in a subprocess."""

import time

import numpy as np

from gen_reason.models.base import VideoGenerator, normalise_seeds
from gen_reason.puzzles import get_task


class OracleGenerator(VideoGenerator):
    """Looks the instance up by its first frame and returns its ground-truth video."""

    name = "oracle"
    fps = 8
    default_num_frames = 49
    default_steps = 1
    default_guidance = 1.0

    def __init__(self, task: str, difficulty: str, seeds, delay: float = 0.0, **task_config):
        task_obj = get_task(task, **task_config)
        self.by_image = {}
        for seed in seeds:
            inst = task_obj.generate(seed, difficulty)
            self.by_image[inst.first_frame.tobytes()] = inst
        self.default_size = next(iter(self.by_image.values())).first_frame.shape[:2]
        self.delay = delay

    def generate(self, image, prompt, *, num_frames=None, seeds=(0,), steps=None, guidance=None, latents=None,
                 on_step=None, output="frames"):
        time.sleep(self.delay)
        instance = self.by_image[np.asarray(image).tobytes()]
        video = instance.solution_video(num_frames or self.default_num_frames)
        out = []
        for seed in normalise_seeds(seeds):
            out.append(video if seed % 2 == 0 else video[: len(video) // 2])
        return out
