"""GPU check: the real Wan models at full size, random weights, under the memory planner's choice.

Each model is built on the GPU from the config-only copy of its Hub folder in
``tests/models/real_configs`` (every component at full size, random weights: nothing is
downloaded), placed as :mod:`gen_reason.models.planner` plans for the GPU's free memory,
and asked for best-of-N videos through our generator (``DiffusersVideoGenerator``) at
the model's own size. Reported per model: the plan, the planner's estimated peak beside
the measured one (``torch.cuda.max_memory_allocated``), seconds per video, and the
overhead of our wrapper against a bare diffusers pipeline call on the same inputs (the
denoising loop with ``output_type="latent"``, same seeds, same steps, interleaved).

Few denoising steps (``--steps``, default 2) keep the whole check inside 8 minutes on one
H100: per-step cost and memory do not depend on the step count, and the weights are
random, so the videos are noise; what is measured is memory and time.

    python bench/gpu_check.py                  # on a GPU: writes the "gpu-check" section of docs/BENCHMARKS.md
    python bench/gpu_check.py --smoke --out X  # CPU: tiny real-layout models, a few steps, a JSON report in X
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_section  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL_CONFIGS = ROOT / "tests" / "models" / "real_configs"
# name -> (config folder or tiny kind, videos per puzzle, denoising steps, wrapper-overhead check);
# size and frames: the model's own. A14B at 720p costs ~4x Wan 2.1 at 480p per video: 4 videos keep
# the whole check inside 8 minutes on one H100 (both experts run: 2 steps straddle its boundary).
CASES = {
    "Wan2.1-I2V-14B-480P": ("Wan2.1-I2V-14B-480P-Diffusers", 8, 2, True),
    "Wan2.2-I2V-A14B-720P": ("Wan2.2-I2V-A14B-Diffusers", 4, 2, False),
}
SMOKE_CASES = {
    "tiny wan2.1-i2v": ("wan2.1-i2v", 4, 2, True),
    "tiny wan2.2-i2v-a14b": ("wan2.2-i2v-a14b", 4, 2, True),
}
PROMPT = "a red dot moves through the maze to the green goal"


def build_generator(source: str, device: torch.device, smoke: bool):
    """A generator over a random-weight pipeline: full size from a real config folder on the GPU,
    or a tiny real-layout one on the CPU; placed as the planner plans. Returns (generator, plan)."""
    from gen_reason.models import DiffusersVideoGenerator, planner, testing
    from gen_reason.models.families import family_for

    if smoke:
        pipe = testing.build_tiny_pipeline(source)
        family = family_for(type(pipe).__name__, type(pipe), dict(pipe.config))
        overrides = dict(testing.TINY_GEOMETRY[source])
    else:
        from gen_reason.models.inspect import build_meta

        built = build_meta(REAL_CONFIGS / source, torch.bfloat16, device=device)
        pipe, family = built.pipeline, built.family
        pipe.tokenizer = testing.tiny_tokenizer()  # the config-only folder has no vocabulary
        if "image_processor" in built.model_index:
            from transformers import CLIPImageProcessor

            pipe.image_processor = CLIPImageProcessor.from_pretrained(str(REAL_CONFIGS / source / "image_processor"))
        overrides = {}
    generator = DiffusersVideoGenerator(pipe, family, name=source, **overrides)
    if not smoke:
        pipe.to("cpu")  # built on the GPU (fast random init); the plan, made on the free memory, decides what goes back
        torch.cuda.empty_cache()
    plan = planner.plan_for(generator, device)
    planner.apply_placement(pipe, device, plan.offload, plan.vae_tiling)
    generator.max_batch = plan.max_batch
    return generator, plan


def bare_call(generator, image, seeds, steps):
    """The diffusers pipeline alone on the same inputs: denoising to latents, no wrapper."""
    pipe, family, options = generator.pipeline, generator.family, generator.options
    geometry = generator._geometry(None, None)
    from PIL import Image

    picture = Image.fromarray(image)
    device = pipe._execution_device
    return pipe(**family.image_kwargs(pipe, picture, len(seeds)), prompt=[PROMPT] * len(seeds),
                negative_prompt=options.negative_prompt, height=geometry.height, width=geometry.width,
                num_frames=geometry.num_frames, num_inference_steps=steps, guidance_scale=options.guidance,
                generator=[torch.Generator(device).manual_seed(s) for s in seeds], output_type="latent",
                **family.call_kwargs(pipe, options)).frames


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(name: str, source: str, videos: int, steps: int, device: torch.device, smoke: bool,
             overhead: bool = True) -> dict:
    """Generate ``videos`` videos of one puzzle (best-of-N) and time it; then (``overhead``) our
    wrapper against the bare pipeline on one video's denoising loop."""
    generator, plan = build_generator(source, device, smoke)
    height, width = generator.default_size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[height // 4: height // 2, width // 4: width // 2] = (255, 0, 0)
    seeds = list(range(videos))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    counter = None
    if device.type != "cuda":  # on the CPU: live tensor bytes, counted op by op
        from gen_reason.models.peak_memory import count_peak

        modules = [m for m in generator.pipeline.components.values() if isinstance(m, torch.nn.Module)]
        counter = count_peak(*modules)
    started = time.perf_counter()
    if counter is None:
        frames = generator.generate(image, PROMPT, seeds=seeds, steps=steps)
    else:
        with counter as counted:
            frames = generator.generate(image, PROMPT, seeds=seeds, steps=steps)
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else counted.peak
    assert len(frames) == videos and frames[0].dtype == np.uint8
    # wrapper overhead: denoising only, one video, interleaved (bare, ours, bare, ours)
    batch = seeds[:1]
    timings = {"bare": [], "ours": []}
    for _ in range(2 if overhead else 0):
        for kind in ("bare", "ours"):
            synchronize(device)
            start = time.perf_counter()
            if kind == "bare":
                bare_call(generator, image, batch, steps)
            else:
                generator.generate(image, PROMPT, seeds=batch, steps=steps, output="latents")
            synchronize(device)
            timings[kind].append(time.perf_counter() - start)
    bare, ours = (min(timings["bare"]), min(timings["ours"])) if overhead else (float("nan"), float("nan"))
    return {"case": name, "size": f"{height}x{width}", "frames": generator.default_num_frames, "videos": videos,
            "steps": steps, "max_batch": plan.max_batch, "offload": plan.offload, "vae_tiling": plan.vae_tiling,
            "estimated_peak_gib": round(plan.estimate.peak_gib, 2) if plan.estimate else None,
            "measured_peak_gib": round(peak / 2**30, 2) if peak is not None else None,
            "seconds_per_video": round(seconds / videos, 3), "bare_seconds": round(bare, 3),
            "ours_seconds": round(ours, 3), "overhead_pct": round(100 * (ours / bare - 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU: tiny real-layout models (for the tests)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 2)")
    parser.add_argument("--videos", type=int, default=None, help="videos per puzzle (default: 8, smoke 4)")
    parser.add_argument("--only", default=None, help="run one case (a name from the table)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON into this folder")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/BENCHMARKS.md")
    args = parser.parse_args()
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run with --smoke for the CPU check")
    device = torch.device("cpu") if smoke else torch.device("cuda")
    cases = SMOKE_CASES if smoke else CASES
    rows = []
    for name, (source, videos, steps, overhead) in cases.items():
        if args.only and args.only != name:
            continue
        row = run_case(name, source, args.videos or videos, args.steps or steps, device, smoke, overhead)
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not smoke:
            torch.cuda.empty_cache()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(rows, indent=1))
    if smoke or args.no_doc:
        return
    gpu = torch.cuda.get_device_name(0)
    header = ["model", "size x frames", "videos", "steps", "plan (batch, offload, VAE tiling)", "estimated peak GiB",
              "measured peak GiB", "s / video", "wrapper vs bare diffusers"]
    body = table(header, [[r["case"], f"{r['size']}x{r['frames']}", r["videos"], r["steps"],
                           f"{r['max_batch']}, {r['offload']}, {'on' if r['vae_tiling'] else 'off'}",
                           r["estimated_peak_gib"], r["measured_peak_gib"], r["seconds_per_video"],
                           f"{r['overhead_pct']:+.1f} %" if r["overhead_pct"] == r["overhead_pct"] else "-"]
                          for r in rows])
    note = (f"GPU: {gpu}. Random weights at full size, built on the GPU from tests/models/real_configs; "
            "few denoising steps (time per step and memory do not depend on the count). Wrapper vs bare: "
            "the denoising loop of one video through DiffusersVideoGenerator.generate(output='latents') "
            "against the diffusers pipeline called directly with output_type='latent', best of 2 interleaved.")
    write_section("gpu-check", "GPU check: full-size Wan models under the memory planner", body + "\n\n" + note)


if __name__ == "__main__":
    main()
