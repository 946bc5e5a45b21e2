"""One side of the referee's before/after bench: the referee of one source tree, in its own process.

    python bench/referee_driver.py SOURCE_ROOT

``SOURCE_ROOT`` is a folder laid out like the repository (``gen_reason/``, ``puzzles/``,
``verifiers/``, ...: this checkout, or an older revision unpacked by ``revisions.tree_at``).
Its packages are imported as ``gen_reason.*`` from there alone (the installed editable
finder, which points at this checkout, is taken out first), so the two sides of the bench
never share a module. The driver imports nothing of the project at the top: it is the same
file for every revision, and it finds each revision's entry points by trying the names they
have had (:data:`ENTRY_POINTS`).

It answers on stdout, one JSON object per line: first ``{"ready": ...}`` (where its modules
came from and which entry points it found), then one answer per request read from stdin.
A request names a video and an instance (``{"id", "video", "instance", "frame"}``: the MP4,
the instance's JSON as ``Instance.to_dict`` writes it, and its first frame as ``.npy``); the
answer holds the wall and CPU seconds of decoding the video as the reference verifier reads
it, of the rule score and of the reference score of that decoded video, and both verdicts
(success, the first rule broken, the reason, the metrics). Anything the side's code raises
is answered as ``{"id", "error"}``; the driver carries on.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

#: Where each revision keeps what the bench calls, tried in order: ``(module, attribute)``.
ENTRY_POINTS = {
    "Instance": [("gen_reason.puzzles", "Instance"), ("gen_reason.puzzles.instance", "Instance"),
                 ("gen_reason.puzzles.base", "Instance")],
    "verifier_for": [("gen_reason.verifiers.registry", "verifier_for"), ("gen_reason.verifiers", "verifier_for")],
    "read_for": [("gen_reason.runs.scoring", "read_for"), ("gen_reason.verifiers.reading", "read_for")],
    "read_video": [("gen_reason.video", "read_video")],
}
KINDS = ("rule", "reference")


def use_source(root: Path) -> None:
    """Make ``import gen_reason...`` load the packages of the source tree ``root``: the
    ``gen_reason`` package from ``root/gen_reason``, with ``root`` on its search path so
    that ``gen_reason.puzzles`` / ``.verifiers`` / ``.solvers`` come from ``root/puzzles``,
    ... (the layout pyproject.toml's package-dir maps). The editable install's finder is
    removed, and nothing of ``gen_reason`` may be imported yet."""
    if any(name == "gen_reason" or name.startswith("gen_reason.") for name in sys.modules):
        raise RuntimeError("gen_reason was imported before its source tree was chosen")
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    spec = importlib.util.spec_from_file_location(
        "gen_reason", root / "gen_reason" / "__init__.py", submodule_search_locations=[str(root / "gen_reason"),
                                                                                      str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reason"] = module
    spec.loader.exec_module(module)


def find_entry_points() -> tuple[dict, dict]:
    """``{name: object}`` and ``{name: "module.attribute"}`` for every name of
    :data:`ENTRY_POINTS` this revision has (``read_for`` may be missing: see :func:`reader`)."""
    found, where = {}, {}
    for name, candidates in ENTRY_POINTS.items():
        for module_name, attribute in candidates:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, attribute):
                found[name], where[name] = getattr(module, attribute), f"{module_name}.{attribute}"
                break
    missing = {"Instance", "verifier_for"} - set(found)
    if missing:
        raise RuntimeError(f"this revision has none of the known names for {', '.join(sorted(missing))}")
    return found, where


def reader(api: dict):
    """``read(verifier, instance, path)``: the revision's ``read_for``, else the verifier's
    own ``read_video`` where it has one, else the plain decoder (what ``read_for`` does)."""
    if "read_for" in api:
        return api["read_for"]

    def read(verifier, instance, path):
        own = getattr(verifier, "read_video", None)
        return own(path, instance) if own is not None else api["read_video"](path)

    return read


def verdict(score) -> dict:
    """Success, the first rule broken, the reason and the metrics of a verifier's ``Score``
    (rounded to 6 decimals; NaN as ``None``), from its ``to_dict`` where it has one."""
    record = score.to_dict() if hasattr(score, "to_dict") else dict(vars(score))
    trace = record.get("trace") or {}
    first = trace.get("first_violation") if isinstance(trace, dict) else None
    metrics = {}
    for key, value in sorted((record.get("metrics") or {}).items()):
        value = None if value is None else float(value)
        metrics[key] = None if value is None or not math.isfinite(value) else round(value, 6)
    return {"success": bool(record.get("success")), "rule": first.get("rule") if isinstance(first, dict) else None,
            "reason": str(record.get("reason", "")), "metrics": metrics}


def timed(fn):
    """``(result, wall seconds, CPU seconds of the process)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


class Side:
    """The loaded referee: instances and verifiers built once per request id."""

    def __init__(self, api: dict) -> None:
        self.api, self.read = api, reader(api)
        self.instances: dict[str, object] = {}
        self.verifiers: dict[tuple[str, str], object] = {}

    def instance(self, request: dict):
        """The request's instance, rebuilt from its JSON and first frame by this revision's ``Instance``."""
        import numpy as np

        if request["id"] not in self.instances:
            data = json.loads(Path(request["instance"]).read_text())
            frame = np.load(request["frame"], allow_pickle=False)
            self.instances[request["id"]] = self.api["Instance"].from_dict(data, first_frame=frame)
        return self.instances[request["id"]]

    def verifier(self, task: str, kind: str):
        """This revision's verifier of ``kind`` for ``task`` (built once)."""
        if (task, kind) not in self.verifiers:
            self.verifiers[task, kind] = self.api["verifier_for"](task, kind)
        return self.verifiers[task, kind]

    def score(self, request: dict) -> dict:
        """Decode the request's video as the reference verifier reads it, then score it with
        the rule and the reference verifier: seconds (wall and CPU) and verdicts."""
        instance = self.instance(request)
        path = Path(request["video"])
        video, wall, cpu = timed(lambda: self.read(self.verifier(instance.task, "reference"), instance, path))
        answer = {"id": request["id"], "frames": int(len(video)), "wall": {"decode": wall}, "cpu": {"decode": cpu},
                  "verdicts": {}}
        for kind in KINDS:
            verifier = self.verifier(instance.task, kind)
            score, wall, cpu = timed(lambda: verifier.score(instance, video))
            answer["wall"][kind], answer["cpu"][kind] = wall, cpu
            answer["verdicts"][kind] = verdict(score)
        return answer


def serve(argv: list[str], start, error_chars: int = 300) -> int:
    """The driver's loop, shared with ``trainer_driver.py``: load the source tree ``argv[0]``
    (:func:`use_source`), call ``start()`` -> ``(respond, ready)`` (``respond(request)``
    answers one request; ``ready``: more keys for the first line), say where the modules
    came from, then answer each request on stdin until it ends. What the side's code raises
    is answered as ``{"id", "error"}`` (at most ``error_chars`` characters)."""
    root = Path(argv[0]).resolve()
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's channel ...
    os.dup2(2, 1)  # ... and whatever the side's code prints goes to stderr
    sys.stdout = sys.stderr
    use_source(root)
    respond, extra = start()
    import gen_reason.verifiers

    ready = {"ready": True, "root": str(root), "gen_reason": str(Path(sys.modules["gen_reason"].__file__).parent),
             "verifiers": str(Path(gen_reason.verifiers.__file__).parent), **extra}
    answers.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer = respond(request)
        except Exception as exc:  # the revision's own failure on this input: reported, not fatal
            answer = {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"[:error_chars]}
        answers.write(json.dumps(answer) + "\n")
    return 0


def start() -> tuple:
    """The referee side: this revision's entry points, and ``Side.score`` to answer with."""
    api, where = find_entry_points()
    return Side(api).score, {"entry_points": where}


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], start))
