"""What tracking finds (maze family): each object's per-frame positions and the notes made.

:class:`ObjectTrack` is one object's track, :class:`Track` the agent's and the box's with
the working video and the events; :func:`lost_events` notes where an object was lost
(or seen twice), for every way of following it (:mod:`.track`, :mod:`.sprite`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gen_reason.verifiers.work import WorkVideo


@dataclass
class ObjectTrack:
    """One object's track: ``positions`` ``(T, 2)`` in spec pixels (NaN where lost),
    ``confidence`` ``(T,)`` in [0, 1], ``duplicated`` ``(T,)`` bool, ``source`` per
    frame (``"colour"``, ``"template"`` or ``"lost"``) and ``area0`` (its area in frame 0,
    working pixels)."""

    positions: np.ndarray
    confidence: np.ndarray
    duplicated: np.ndarray
    source: list[str]
    area0: float

    @property
    def lost(self) -> np.ndarray:
        """Boolean ``(T,)``: frames where the object was not found."""
        return np.isnan(self.positions[:, 0])

    def first_lost(self) -> int | None:
        """Index of the first frame where the object was not found."""
        idx = np.flatnonzero(self.lost)
        return int(idx[0]) if len(idx) else None

    def first_duplicated(self) -> int | None:
        """Index of the first frame with two object-sized blobs."""
        idx = np.flatnonzero(self.duplicated)
        return int(idx[0]) if len(idx) else None


@dataclass
class Track:
    """What :func:`~gen_reason.verifiers.track.track_objects` found: the agent's track, the box's (sokoban) and notes."""

    agent: ObjectTrack
    box: ObjectTrack | None
    work: WorkVideo = field(repr=False)
    events: list[dict] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """Frames in the tracked video."""
        return len(self.agent.positions)

    def to_trace(self) -> dict:
        """JSON-ready per-frame positions (``None`` where lost), rounded to 0.1 px."""
        def rows(track):
            return [None if x != x else [round(x, 1), round(y, 1)] for x, y in track.positions.tolist()]  # NaN != NaN

        trace = {"agent_positions": rows(self.agent), "agent_source": self.agent.source, "events": self.events}
        if self.box is not None:
            trace["box_positions"] = rows(self.box)
        return trace


def lost_events(name: str, positions: np.ndarray, duplicated: np.ndarray | None = None) -> list[dict]:
    """The events ``lost`` (frames where ``positions`` are NaN) and ``duplicated`` (frames
    flagged in ``duplicated``) of the object ``name``, each at its first frame."""
    events = []
    lost = np.flatnonzero(np.isnan(positions[:, 0]))
    if len(lost):
        events.append({"frame": int(lost[0]), "kind": "lost", "object": name, "frames": int(len(lost)),
                       "detail": f"{name} lost at frame {int(lost[0])} ({len(lost)} frame(s) in all)"})
    dup = np.flatnonzero(duplicated) if duplicated is not None else []
    if len(dup):
        events.append({"frame": int(dup[0]), "kind": "duplicated", "object": name, "frames": int(len(dup)),
                       "detail": f"{name} duplicated at frame {int(dup[0])} ({len(dup)} frame(s) in all)"})
    return events
