"""Frame-parallel work for the referee: one contiguous chunk of frames per core.

OpenCV releases the GIL inside its calls, so the same per-pixel calls run on separate
chunks of a video in threads use every core, as the video decoder (FFmpeg's frame
threads) already does. The number of threads follows OpenCV's own setting
(``cv2.setNumThreads(1)`` makes the referee single-threaded too), capped by the cores
this process may use. Results come back in frame order, so a chunked computation
gives exactly what the whole-video one gives.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import cv2

T = TypeVar("T")
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, size, pool)
_PREFIX = "referee-chunk"
_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a lock another thread held at the fork would never be released


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def workers() -> int:
    """Threads the referee may use: OpenCV's thread setting, capped by the usable cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cv2.getNumThreads(), cores))


def chunk_bounds(count: int, parts: int, min_size: int = 1) -> list[tuple[int, int]]:
    """``range(count)`` cut into at most ``parts`` contiguous ``(lo, hi)`` pieces of
    near-equal length, none shorter than ``min_size`` (one piece when ``count`` is small)."""
    parts = max(1, min(parts, count // max(1, min_size)))
    edges = [round(i * count / parts) for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def _pool(size: int) -> ThreadPoolExecutor:
    # A pool made before a fork has no threads in the child: make a new one there.
    global _POOL
    with _LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < size:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)  # too small: its threads end once idle (queued work still runs)
            _POOL = (os.getpid(), size, ThreadPoolExecutor(max_workers=size, thread_name_prefix=_PREFIX))
        return _POOL[2]


def map_chunks(fn: Callable[[int, int], T], count: int, min_size: int = 16) -> list[T]:
    """``[fn(lo, hi) for (lo, hi) in chunks]`` over ``range(count)``, one chunk per worker
    thread (see :func:`workers`), in order. Runs inline when one chunk suffices, and when
    called from a chunk (nested calls never wait on the pool they run in)."""
    # Inline in a pool thread too: a chunk that split itself again would wait on work
    # queued behind it.
    nested = threading.current_thread().name.startswith(_PREFIX)
    bounds = chunk_bounds(count, 1 if nested else workers(), min_size)
    if len(bounds) <= 1:
        return [fn(0, count)]
    pool = _pool(len(bounds) - 1)
    futures = [pool.submit(fn, lo, hi) for lo, hi in bounds[1:]]
    first = fn(*bounds[0])  # this thread takes the first chunk
    return [first] + [f.result() for f in futures]
