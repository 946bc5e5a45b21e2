"""Writes the tutorial notebooks from the cell sources below, so they stay reviewable as code.

    python notebooks/build_notebooks.py      # rewrites notebooks/*.ipynb (outputs empty)

CI executes every notebook top to bottom (tests/test_notebooks.py), so they never rot.
"""

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

NOTEBOOKS = {
    "01_quickstart.ipynb": [
        ("md", "# Quickstart: a maze, a video model, a referee\n\nMake a puzzle, have the embedded "
               "default model generate the video of its solution, watch it, and score it."),
        ("code", "from IPython.display import Image, display\n"
                 "from gen_reason.puzzles import get_task\n"
                 "from gen_reason.video import filmstrip, write_image\n\n"
                 "task = get_task(\"maze/grid\", skin=\"pastel\")\n"
                 "instance = task.generate(seed=0, difficulty=\"medium\")\n"
                 "print(instance.prompt)\n"
                 "write_image(\"out/quickstart/gt_strip.png\", filmstrip(instance.solution_video(49), 8))\n"
                 "display(Image(\"out/quickstart/gt_strip.png\"))"),
        ("md", "## Solve with the embedded model (three lines)\n\n`solve` makes a fresh maze in the style "
               "the model was trained on, generates, referees, and writes the files."),
        ("code", "from gen_reason import solve\n"
                 "result = solve(\"maze\", seed=1_000_001, out=\"out/quickstart/solve\")\n"
                 "result"),
        ("md", "## The referee's verdict in detail\n\nStrict success needs the goal reached with no rule "
               "broken; the VR-Bench-compatible metrics sit beside it."),
        ("code", "from gen_reason.verifiers.registry import verifier_for\n"
                 "score = verifier_for(result.instance.task, \"reference\").score(result.instance, result.attempt.video)\n"
                 "print(score.reason)\n"
                 "{k: round(v, 3) for k, v in score.metrics.items() if k in ('success', 'success_lenient', "
                 "'precision_rate', 'step_deviation', 'exact_match', 'maze_fidelity')}"),
    ],
    "02_chain_of_steps.ipynb": [
        ("md", "# Chain of steps: what the model \"thinks\" at every denoising step\n\n"
               "Decode the predicted clean video (x0) at every k-th step, score each with the referee, and "
               "see when the answer is committed; then probe the layers."),
        ("code", "from IPython.display import Image, display\n"
                 "from gen_reason.probe.run import run_probe\n\n"
                 "summary = run_probe(\"maze\", \"embedded\", \"out/chain_of_steps\", instances=4, seeds=4, every=4,\n"
                 "                    progress=False)\n"
                 "{k: v for k, v in summary.items() if not isinstance(v, (list, dict))}"),
        ("md", "Rows are denoising steps (top: pure noise), columns are frames of the predicted clean video."),
        ("code", "display(Image(\"out/chain_of_steps/filmstrip.png\"))"),
        ("md", "The emergence curve: referee metrics of each step's x0, and the layer x step probe accuracy."),
        ("code", "display(Image(\"out/chain_of_steps/emergence.png\"))\n"
                 "display(Image(\"out/chain_of_steps/layer_probe.png\"))"),
    ],
    "03_finetune.ipynb": [
        ("md", "# Fine-tuning: a short LoRA run and its before/after\n\n"
               "Make a small dataset of 6x6 mazes (larger than the embedded model was trained on), train a "
               "LoRA on the model for a few steps, and score held-out puzzles before and after. This is a "
               "demonstration that runs in a minute on a laptop; the real recipe is "
               "`genreason train lora --config configs/lora_wan.yaml`."),
        ("code", "from gen_reason.datasets import DatasetSpec, make_dataset\n"
                 "from gen_reason.models.loading import resolve_model_path\n"
                 "from gen_reason.models.loading import model_task_defaults, task_config_for\n\n"
                 "defaults = model_task_defaults(resolve_model_path(\"embedded\"))\n"
                 "task_config = task_config_for(defaults, \"6x6\")  # the model's style at 6x6\n"
                 "frames = defaults.get(\"num_frames\", 49)\n"
                 "data = make_dataset(DatasetSpec(task=\"maze/grid\", n=32, difficulties=(\"6x6\",), seed=0, num_frames=frames,\n"
                 "                                task_config=task_config), \"out/finetune/data\", progress=False)\n"
                 "data"),
        ("code", "from gen_reason.train.lora import load_lora_config, train_lora\n\n"
                 "config = load_lora_config(None, dict(model=str(resolve_model_path(\"embedded\")), data=str(data),\n"
                 "                                     output_dir=\"out/finetune/lora\", rank=8, max_steps=20, batch_size=4,\n"
                 "                                     learning_rate=5e-4, checkpoint_every=0, validate_every=0))\n"
                 "lora = train_lora(config, progress=False)\n"
                 "lora"),
        ("code", "import numpy as np\n"
                 "from gen_reason.models.loading import load_generator\n"
                 "from gen_reason.puzzles import get_task\n"
                 "from gen_reason.verifiers.registry import verifier_for\n\n"
                 "held_out = [get_task(\"maze/grid\", **task_config).generate(1_000_000 + i, \"6x6\") for i in range(4)]\n"
                 "referee = verifier_for(\"maze/grid\", \"reference\")\n\n"
                 "def success_rate(generator):\n"
                 "    wins = [referee.score(inst, generator.generate(inst.first_frame, inst.prompt, seeds=[0])[0]).success\n"
                 "            for inst in held_out]\n"
                 "    return float(np.mean(wins))\n\n"
                 "from gen_reason.train.outputs import load_embedded_lora\n\n"
                 "generator = load_generator(\"embedded\")\n"
                 "before = success_rate(generator)\n"
                 "load_embedded_lora(generator.pipeline, lora)  # the LoRA into the pixel-space UNet\n"
                 "after = success_rate(generator)\n"
                 "print(f\"strict success on {len(held_out)} held-out 6x6 mazes: before {before:.2f}, after {after:.2f}\")"),
    ],
    "04_closed_loop.ipynb": [
        ("md", "# Closed loop (CollabVR style)\n\nA planner picks the next action, the video model makes a "
               "short clip, a verifier accepts it or rolls back to the last legal frame. On a laptop the "
               "planner is a fixed instruction and the verifier is the rule referee (no VLM needed)."),
        ("code", "from gen_reason.models.loading import load_generator\n"
                 "from gen_reason.models.loading import model_task_defaults, task_config_for\n"
                 "from gen_reason.runs.solve import upscale\n"
                 "from gen_reason.models.loading import resolve_model_path\n"
                 "from gen_reason.puzzles import get_task\n"
                 "from gen_reason.solvers.registry import get_solver\n"
                 "from gen_reason.verifiers.registry import verifier_for\n\n"
                 "generator = load_generator(\"embedded\")\n"
                 "defaults = model_task_defaults(resolve_model_path(\"embedded\"))\n"
                 "instance = get_task(\"maze/grid\", **task_config_for(defaults, \"5x5\")).generate(1_000_002, \"5x5\")\n"
                 "solver = get_solver(\"closed-loop\", max_steps=3, attempts_per_step=3)\n"
                 "attempt = solver.solve(instance, generator, verifier_for(instance.task, \"rule\"), None,\n"
                 "                       reference=verifier_for(instance.task, \"reference\"))\n"
                 "print(len(attempt.candidates), \"clips tried;\", attempt.compute)"),
        ("code", "from IPython.display import Image, display\n"
                 "from gen_reason.video import filmstrip, write_image\n"
                 "for i, cand in enumerate(attempt.candidates):\n"
                 "    print(i, cand.meta.get('kind', ''), 'accepted' if cand.score.success else cand.score.reason)\n"
                 "write_image(\"out/closed_loop/chosen.png\", upscale(filmstrip(attempt.video, 8)[None], 128)[0])\n"
                 "display(Image(\"out/closed_loop/chosen.png\"))"),
    ],
}


def build(name: str, cells) -> None:
    """Write one notebook with empty outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        build(name, cells)
        print("wrote", HERE / name)
