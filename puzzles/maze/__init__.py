"""The maze family: grid, irregular roads, trap fields, sokoban, isometric 3D, draw-the-path.

Every maze-family ``Instance.spec`` follows one contract so that one referee judges
them all (``gen_reason.verifiers.maze``):

- ``family``: ``"maze"``; ``image_size``: ``[H, W]`` of the first frame.
- ``nodes``: ``[[x, y], ...]`` pixel centres of the places the agent may stand;
  ``edges``: ``[[i, j], ...]`` legal single moves between them (undirected);
  ``start`` / ``goal``: node indices; ``step_px``: typical pixel distance of one move.
- ``goal_box``: ``[x0, y0, x1, y1]`` pixel box of the goal region.
- ``agent``: ``{"color": [r, g, b], "icon": str, "size_px": float}``.
- ``colors``: named RGB colours of the scene (``wall``, ``floor``, ``goal``, ...).
- ``hazards``: node indices the agent must never enter (traps); may be empty.
- ``trail``: whether visited places are painted (the path stays visible).
- ``layout``: the task's own canonical description (grid rows, road graph, ...); it
  alone decides puzzle identity (used for train/test dedupe).
- Sokoban adds ``box`` (``start``, ``target`` node, ``color``, ``size_px``).

``Instance.solution`` is ``{"path": [node, ...], ...}``: the agent's node sequence
from ``start`` to ``goal`` (sokoban adds ``"box_path"``).
"""
