"""Re-measure the memory planner's constants on the real model configurations (no GPU, no weights).

Each config-only copy of a real Hub folder in ``tests/models/real_configs`` is built at full
size on the meta device; one transformer pass, one VAE decode and one VAE encode of the
conditioning at the model's own size are "run" there, with live tensor bytes counted op by
op (:mod:`gen_reason.models.peak_memory`). Printed per folder: the measured constants
c_T (bytes per latent token per unit of width per byte), c_V (bytes per decoded pixel per
byte, LTX: per pixel and frame) and c_E (bytes per encoded pixel per byte), beside the
values in ``gen_reason/models/planner.py``'s tables, from which they were taken.

    python bench/calibrate_planner.py [FOLDER ...]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from gen_reason.models.peak_memory import (count_peak, decode_call, module_tensors, one_block_model,  # noqa: E402
                                          transformer_call)

REAL_CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "models" / "real_configs"


def activation(module, call, inputs) -> int:
    """Peak live bytes of ``call`` beyond ``module``'s own weights."""
    weights = sum(t.numel() * t.element_size() for t in module_tensors(module))
    with count_peak(module, inputs=inputs) as counter:
        call()
    return counter.peak - weights


def calibrate(folder: Path) -> dict:
    """The measured and tabled constants of one model folder."""
    meta, geometry, workload = one_block_model(folder)
    family, pipe = meta.family, meta.pipeline
    height, width = geometry.height, geometry.width
    w = workload
    token = activation(pipe.transformer, *transformer_call(pipe, family, geometry, 1))
    decode = activation(pipe.vae, *decode_call(pipe, family, geometry))
    expand = bool(pipe.config.get("expand_timesteps"))
    frames = family.defaults.num_frames if type(pipe.vae).__name__ == "AutoencoderKLWan" and not expand else 1
    vae_dtype = next(pipe.vae.parameters()).dtype
    condition = torch.zeros(1, 3, frames, height, width, device="meta", dtype=vae_dtype)
    encode = activation(pipe.vae, lambda: pipe.vae.encode(condition), [condition])
    return {
        "folder": folder.name,
        "c_T": token / (w.cfg * w.tokens * w.hidden * w.compute_bytes), "c_T table": w.token_workset,
        "c_V": (decode - w.output_bytes) / (w.vae_pixels * w.vae_bytes), "c_V table": w.vae_workset,
        "c_E": encode / (height * width * w.vae_bytes), "c_E table": w.encode_workset,
    }


def main() -> None:
    """Print the measured and tabled constants of the folders named (default: all of them)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help=f"folders of {REAL_CONFIGS} (default: all)")
    known = sorted(p.name for p in REAL_CONFIGS.iterdir() if (p / "model_index.json").is_file())
    names = parser.parse_args().folders or known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"no model folder {', '.join(unknown)} in {REAL_CONFIGS}; known: {', '.join(known)}")
    print(f"{'folder':32s} {'c_T':>7s} {'table':>7s} {'c_V':>9s} {'table':>9s} {'c_E':>8s} {'table':>8s}")
    for name in names:
        row = calibrate(REAL_CONFIGS / name)
        print(f"{row['folder']:32s} {row['c_T']:7.2f} {row['c_T table']:7.2f} {row['c_V']:9.1f} "
              f"{row['c_V table']:9.1f} {row['c_E']:8.1f} {row['c_E table']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
