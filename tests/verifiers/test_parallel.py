"""The referee's frame-parallel helper: exact chunking, order, OpenCV's thread setting, forks."""

import multiprocessing
import threading

import cv2
import pytest

from gen_reason.verifiers import parallel


@pytest.mark.parametrize("count", [0, 1, 5, 16, 31, 32, 33, 100, 261])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_chunks_cover_the_range_in_order(count, parts):
    bounds = parallel.chunk_bounds(count, parts, min_size=16)
    covered = [i for lo, hi in bounds for i in range(lo, hi)]
    assert covered == list(range(count))
    assert len(bounds) <= max(1, parts)
    if len(bounds) > 1:
        assert min(hi - lo for lo, hi in bounds) >= 16
        assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


def test_map_chunks_returns_chunks_in_order_from_several_threads(monkeypatch):
    monkeypatch.setattr(parallel, "workers", lambda: 3)
    seen = set()

    def fn(lo, hi):
        seen.add(threading.get_ident())
        return list(range(lo, hi))

    out = parallel.map_chunks(fn, 90, min_size=10)
    assert [i for chunk in out for i in chunk] == list(range(90))
    assert len(out) == 3 and len(seen) >= 2


def test_a_chunk_that_splits_again_runs_inline(monkeypatch):
    monkeypatch.setattr(parallel, "workers", lambda: 2)

    def outer(lo, hi):
        inner = parallel.map_chunks(lambda a, b: (a, b), hi - lo, min_size=1)
        return (threading.current_thread().name, inner)

    result = []
    runner = threading.Thread(target=lambda: result.append(parallel.map_chunks(outer, 64, min_size=8)), daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert result, "nested map_chunks deadlocked on its own pool"
    out = result[0]
    assert out[0][1] == [(0, 16), (16, 32)]  # the calling thread's chunk may split
    assert out[1][0].startswith("referee-chunk") and out[1][1] == [(0, 32)]  # the pool thread's ran inline


def test_workers_follow_opencvs_thread_setting():
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        assert parallel.workers() == 1
        assert parallel.map_chunks(lambda lo, hi: (lo, hi), 100) == [(0, 100)]  # inline, one chunk
    finally:
        cv2.setNumThreads(before)


def _child(queue):
    queue.put(parallel.map_chunks(lambda lo, hi: hi - lo, 64, min_size=8))


def test_a_forked_child_gets_its_own_pool(monkeypatch):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    assert parallel.map_chunks(lambda lo, hi: hi - lo, 64, min_size=8) == [32, 32]  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed on the parent's thread pool"
    assert queue.get(timeout=5) == [32, 32]
