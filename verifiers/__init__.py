"""The referee (installed as ``gen_reason.verifiers``): pixel-based path extraction, per-task metrics and VLM judges.

Maze family (``maze/grid``, ``maze/irregular``, ``maze/trapfield``, ``maze/sokoban``,
``maze/3d``): :mod:`.maze` holds ``MazeRuleVerifier`` (spec only) and
``MazeReferenceVerifier`` (adds VR-Bench's metrics against the solution), built on
:mod:`.track` (agent/box tracking: :mod:`.work` prepares the working copy,
:mod:`.colours` finds the objects' colours, :mod:`.sprite` follows a sprite by its
picture, :mod:`.tracked` holds what tracking returns), :mod:`.rules` (rule checks with
the first violation: :mod:`.walk` the movement rules on the spec graph, :mod:`.pushes`
sokoban, :mod:`.scene` the picture), :mod:`.metrics` (VR-Bench PR/SR/SD/EM/MF) and
:mod:`.score` (``Score``).
:mod:`.degrade` degrades videos for robustness tests; :mod:`.vrbench` reads VR-Bench
levels as instances. Submodules import lazily: importing this package loads nothing.
"""
