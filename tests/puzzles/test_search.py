"""The one breadth-first search (puzzles/maze/graph.search) every puzzle's solver uses."""

from gen_reason.puzzles.maze.graph import path_to, search, search_path

# 0 - 1 - 2
# |       |
# 3 - 4 - 5     6 (alone)
ADJ = {0: [1, 3], 1: [0, 2], 2: [1, 5], 3: [0, 4], 4: [3, 5], 5: [2, 4], 6: []}


def test_distances_previous_and_visiting_order():
    previous, distance = search([0], lambda u: ADJ[u])
    assert distance == {0: 0, 1: 1, 3: 1, 2: 2, 4: 2, 5: 3}
    assert list(previous) == [0, 1, 3, 2, 4, 5]  # breadth-first, neighbours in the order given
    assert path_to(previous, 5) == [0, 1, 2, 5]  # the first of the two shortest paths in that order
    assert path_to(previous, 6) is None


def test_neighbour_order_picks_among_equal_paths():
    previous, _ = search([0], lambda u: sorted(ADJ[u], reverse=True))
    assert path_to(previous, 5) == [0, 3, 4, 5]


def test_several_sources_and_an_early_goal():
    _, distance = search([2, 4], lambda u: ADJ[u])
    assert distance[0] == 2 and distance[5] == 1
    previous, distance = search([0], lambda u: ADJ[u], goal=lambda v: v == 2)
    assert 2 in previous and 5 not in previous  # stopped when the goal was queued
    assert search([2], lambda u: ADJ[u], goal=lambda v: v == 2)[1] == {2: 0}


def test_depth_and_size_limits():
    _, distance = search([0], lambda u: ADJ[u], max_depth=2)
    assert distance == {0: 0, 1: 1, 3: 1, 2: 2, 4: 2}  # nodes 2 moves away are reached, not expanded
    previous, _ = search([0], lambda u: ADJ[u], limit=3)
    assert list(previous) == [0, 1, 3]  # stopped before a fourth node


def test_search_path_to_the_first_goal():
    assert search_path([0], lambda u: ADJ[u], lambda v: v in (4, 5)) == [0, 3, 4]
    assert search_path([2, 0], lambda u: ADJ[u], lambda v: v in (0, 2)) == [2]  # a source, in the order given
    assert search_path([0], lambda u: ADJ[u], lambda v: v == 6) is None  # unreachable
    assert search_path([0], lambda u: ADJ[u], lambda v: v == 5, max_depth=2) is None  # too far
