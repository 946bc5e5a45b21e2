"""The unbiased pass@k estimator against values computed by hand."""

from math import comb

import pytest

from gen_reason.errors import UserError
from gen_reason.solvers.passk import mean_pass_at_k, pass_at_k, pass_at_k_curve


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 0, 1, 0.0),  # nothing correct
        (5, 5, 3, 1.0),  # everything correct
        (4, 1, 1, 1 / 4),  # pass@1 is the success rate
        (10, 3, 1, 3 / 10),
        (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 11/12
        (10, 8, 3, 1.0),  # n - c < k: every draw holds a correct sample
        (3, 1, 3, 1.0),
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_the_binomial_formula_everywhere():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - comb(n - c, k) / comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(0, 0, 1), (3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1), (3.5, 1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(UserError):
        pass_at_k(n, c, k)


def test_curve_and_mean_over_puzzles():
    curve = pass_at_k_curve([True, False, False, False])
    assert curve == pytest.approx({1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0})
    assert pass_at_k_curve([], ks=[1]) == {}
    assert pass_at_k_curve([True, False], ks=[1, 5]) == {1: 0.5}
    mean = mean_pass_at_k([[True, False], [False, False], [True, True, False]], ks=[1, 3])
    assert mean[1] == pytest.approx((0.5 + 0.0 + 2 / 3) / 3)
    assert mean[3] == pytest.approx(1.0)  # only the third puzzle has 3 samples
