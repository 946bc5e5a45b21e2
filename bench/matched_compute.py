"""Every test-time strategy on the embedded model at matched compute: the table and plots.

Runs (or resumes) ``genreason eval`` with ``configs/matched_compute.yaml`` (200 held-out
5x5 mazes, every strategy given the same budget of model forward passes), writes its
report (tables with Wilson intervals, success-vs-budget and pass@k plots, gallery) into
``docs/runs/matched_compute`` and the "matched-compute" section of docs/BENCHMARKS.md:
per strategy, strict success, lenient (VR-Bench) success, EM, PR and the NFE it used.
Any config field can be overridden as in ``genreason eval`` (``--model.steps 20``).

    python bench/matched_compute.py --model.steps 20 --budget.nfe 160   [--no-write]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads spin on a busy CPU

import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "matched_compute.yaml"
DOCS_RUN = ROOT / "docs" / "runs" / "matched_compute"


def main(argv=None) -> int:
    from gen_reason.cli.commands import parse_dotted
    from gen_reason.errors import UserError
    from gen_reason.runs.config import load_config
    from gen_reason.runs.report import markdown_table, summarise, write_report
    from gen_reason.runs.runner import run_eval
    from gen_reason.runs.store import load_results

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    write = "--no-write" not in argv  # --no-write: run and report into the run folder only
    argv = [a for a in argv if a != "--no-write"]
    out = None
    if "--out" in argv:  # the run folder (default: the config's runs/matched_compute)
        i = argv.index("--out")
        out = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    try:
        overrides = {f"{section}.{name}": value
                     for section, fields in parse_dotted(argv, ("data", "model", "budget")).items()
                     for name, value in fields.items()}
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out:
        overrides["out"] = out
    try:
        config = load_config(str(CONFIG), overrides)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    began = time.time()
    run = run_eval(config, progress=True)
    minutes = (time.time() - began) / 60
    results = load_results(run)
    if write:  # the docs get the config, report, plots and gallery; the per-video records (~25 MB) stay in the run
        if DOCS_RUN.exists():
            shutil.rmtree(DOCS_RUN)
        DOCS_RUN.mkdir(parents=True)
        shutil.copy(Path(run) / "config.yaml", DOCS_RUN / "config.yaml")
    write_report([run], DOCS_RUN if write else run)
    rows = summarise(results)
    table = markdown_table(rows, ["solver", "n", "success", "success_lenient", "exact_match", "precision_rate", "nfe",
                                  "seconds"])
    steps = config.model.steps or "the model's default"
    body = (
        f"The same {config.data.n} held-out {', '.join(config.data.difficulties)} `maze/grid` puzzles (seeds from "
        f"{config.data.seed}) for every strategy, on the embedded model at {steps} sampling steps, each strategy given a "
        f"budget of {config.budget.get('nfe')} model forward passes (NFE). success = strict (goal reached, no rule broken, "
        "our referee) with its 95 % Wilson interval; success_lenient = VR-Bench's (goal reached); EM / PR as VR-Bench "
        "defines them; nfe = what the strategy used on average; seconds per puzzle on this CPU. The strategies choose "
        "their answer with the rule verifier only (no answer leak). Plots (success vs budget, pass@k) and the "
        "per-video gallery: `docs/runs/matched_compute/report.md`.\n\n"
        + table
        + f"\n\nWall clock: {minutes:.0f} min for this invocation (resumed runs count only their own part)."
    )
    command = "python bench/matched_compute.py " + " ".join(argv)
    print(body)
    if not write:
        return 0
    write_section("matched-compute", "Test-time strategies at matched compute (embedded model)", body, command.strip())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
