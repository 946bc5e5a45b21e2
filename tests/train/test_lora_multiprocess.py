"""Data-parallel LoRA training: two CPU processes (gloo) equal one process with the same global batch.

``accelerate launch --multi_gpu --num_processes 2`` starts the processes through torchrun
on any machine; the trainer asks accelerate for CPU data parallelism when there is no GPU.
"""

import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import pytest
import yaml

from gen_reason.models import testing
from gen_reason.train.lora import train_lora
from gen_reason.train.lora_config import load_lora_config
from gen_reason.train.outputs import LORA_WEIGHTS


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    from safetensors.torch import load_file

    from gen_reason.datasets import DatasetSpec, make_dataset

    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate command is not installed")
    data = make_dataset(DatasetSpec(task="maze/grid", n=4, num_frames=9, task_config={"cell_px": 4}),
                        tmp_path / "data", workers=1, progress=False)
    model = testing.save_tiny_pipeline("wan2.1-i2v", tmp_path / "wan")
    settings = dict(model=str(model), data=str(data), rank=4, max_steps=4, learning_rate=1e-2, height=16, width=16,
                    num_frames=9, checkpoint_every=2, gradient_accumulation_steps=2)
    config_file = tmp_path / "lora.yaml"
    config_file.write_text(yaml.safe_dump(settings))

    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "gen_reason.train.lora",
               "--config", str(config_file), "--out", str(tmp_path / "two"), "--train.batch_size", "1", "--quiet"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    two = tmp_path / "two"

    one = train_lora(load_lora_config(None, dict(settings, batch_size=2, output_dir=str(tmp_path / "one"))),
                     progress=False)

    a, b = load_file(one / LORA_WEIGHTS), load_file(two / LORA_WEIGHTS)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    losses = [[json.loads(line)["loss"] for line in (run / "losses.jsonl").read_text().splitlines()]
              for run in (one, two)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    assert not any(a[k].abs().max() == 0 for k in a if "lora_B" in k)  # it did train
