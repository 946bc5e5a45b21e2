"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code", the HumanEval paper) and its curve over k.

With ``n`` samples of which ``c`` are correct, the probability that at least one of
``k`` samples drawn without replacement is correct is

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as the numerically stable product ``1 - prod_{i = n-c+1}^{n} (1 - k / i)``
(the paper's reference code), exact for any n. The video-reasoning anchors report it
over the N videos of each puzzle, averaged over puzzles.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from gen_reason.errors import UserError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``c`` correct out of ``n`` samples (``1 <= k <= n``, ``0 <= c <= n``)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or int(value) != value:
            raise UserError(f"pass@k: {name} must be an integer; got {value!r}")
    n, c, k = int(n), int(c), int(k)
    if n < 1 or not 0 <= c <= n:
        raise UserError(f"pass@k needs n >= 1 and 0 <= c <= n; got n={n}, c={c}")
    if not 1 <= k <= n:
        raise UserError(f"pass@k needs 1 <= k <= n; got k={k}, n={n}")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def pass_at_k_curve(successes: Sequence[bool], ks: Iterable[int] | None = None) -> dict[int, float]:
    """``{k: pass@k}`` over one puzzle's samples (``successes``: one verdict per sample).

    ``ks`` default: every k from 1 to the number of samples; k larger than that is left out.
    """
    n = len(successes)
    if n == 0:
        return {}
    c = sum(bool(success) for success in successes)
    wanted = range(1, n + 1) if ks is None else ks
    return {int(k): pass_at_k(n, c, int(k)) for k in wanted if 1 <= int(k) <= n}


def mean_pass_at_k(per_puzzle: Sequence[Sequence[bool]], ks: Iterable[int]) -> dict[int, float]:
    """pass@k averaged over puzzles (each puzzle's list of sample verdicts), as papers report it.

    Puzzles with fewer than k samples are left out of that k's mean.
    """
    ks = [int(k) for k in ks]
    curves = [pass_at_k_curve(successes, ks) for successes in per_puzzle]
    result = {}
    for k in ks:
        values = [curve[k] for curve in curves if k in curve]
        if values:
            result[k] = sum(values) / len(values)
    return result
