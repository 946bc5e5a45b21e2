"""The referee (installed as ``gen_reason.verifiers``): pixel-based path extraction, per-task metrics and VLM judges.

Maze family (``maze/grid``, ``maze/irregular``, ``maze/trapfield``, ``maze/sokoban``,
``maze/3d``): :mod:`.maze` holds ``MazeRuleVerifier`` (spec only) and
``MazeReferenceVerifier`` (adds VR-Bench's metrics against the solution), built on
:mod:`.track` (agent/box tracking), :mod:`.rules` (rule checks with the first
violation), :mod:`.metrics` (VR-Bench PR/SR/SD/EM/MF) and :mod:`.score` (``Score``).
:mod:`.degrade` degrades videos for robustness tests; :mod:`.vrbench` reads VR-Bench
levels as instances. Submodules import lazily: importing this package loads nothing.
"""
