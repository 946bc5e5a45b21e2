"""The referee (installed as ``gen_reason.verifiers``): pixel-based path extraction, per-task metrics and VLM judges."""
