"""Interoperability with the anchors' formats: read theirs, write ours in theirs, compare referees.

- :mod:`.vrbench_read`: a VR-Bench folder (``<game>/<skin>/<difficulty>/{states,images,
  videos}``, UnifiedState v1.0) as instances our referee scores, and model outputs named
  as VR-Bench names them (``<difficulty>_<NNNN>*.mp4``) matched to their levels.
- :mod:`.vrbench_write`: our maze-family datasets in VR-Bench's layout and state schema
  (``make-dataset --format vrbench``) and in DiffSynth-Studio's ``metadata.csv`` layout
  (``--format diffsynth``).
- :mod:`.compare`: ``compare-referees``: our strict referee beside the lenient success
  VR-Bench reports, and beside VR-Bench's own evaluator when a checkout is given.
- :mod:`.videothinkbench`: VideoThinkBench draw-the-path mazes scored with the rules of
  ``maze/draw``.

Nothing here imports torch; each module imports what it needs when called.
"""
