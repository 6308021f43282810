"""Ranking Similarity S(R1, R2): how well a measure ranks methods in the order of a test metric.

For n items scored by `a` (e.g. each method's FD) and by `b` (e.g. each method's mAP), S is the fraction
of item pairs that both scores order the same way. Random scores give E[S] = 0.5, so a measure is
judged by |S − 0.5|; S > 0.5 means "higher measure ↔ higher metric", S < 0.5 the inverted order, which
is just as informative. `signed = S − 0.5` keeps both: its magnitude is the reported |S − 0.5|, its sign
the direction. Without ties S = (1 + τ)/2 with Kendall's τ, hence |S − 0.5| = |τ|/2.

Ties (a pair equal in `a` or in `b`) — the rules differ only on tied pairs:
- ties="half" (default): a pair tied in either score counts ½, as neither agreeing nor disagreeing.
  Then S = (1 + τ_a)/2 holds with ties too, and a measure that cannot tell the methods apart scores
  exactly 0.5 (no information) instead of being judged on the few pairs it does separate.
- ties="sign": the paper's eq. 9 literally, 1[sign(a_i − a_j) = sign(b_i − b_j)]: a pair tied in BOTH
  scores agrees (sign 0 = sign 0, counts 1), a pair tied in only one disagrees (counts 0). Use it to
  reproduce the FD paper's numbers. Example: 3 items, a = (1, 1, 2), b = (5, 5, 7): "sign" gives
  S = 1.0, "half" 2.5/3 = 0.833. Its pitfall: a constant measure against untied metrics gets S = 0,
  i.e. |S − 0.5| = 0.5, the largest possible "information".
- ties="exclude": tied pairs leave the numerator and the denominator (S = C/(C+D), Goodman-Kruskal
  γ-like); S is NaN when every pair is tied.
Numpy only: the report uses it without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIE_RULES = ("half", "sign", "exclude")


@dataclass(frozen=True)
class RankingSimilarity:
    """S with its pair counts; `signed` = S − 0.5, `deviation` = |S − 0.5|, `tau` = 2S − 1."""

    s: float
    concordant: int
    discordant: int
    tied: int
    ties: str

    @property
    def n_pairs(self) -> int:
        return self.concordant + self.discordant + self.tied

    @property
    def signed(self) -> float:
        return self.s - 0.5

    @property
    def deviation(self) -> float:
        return abs(self.s - 0.5)

    @property
    def sign(self) -> int:
        """+1: same order as the metric, −1: inverted, 0: no preference (or undefined)."""
        if math.isnan(self.s) or self.s == 0.5:
            return 0
        return 1 if self.s > 0.5 else -1

    @property
    def tau(self) -> float:
        return 2.0 * self.s - 1.0

    def format(self, digits: int = 2) -> str:
        """'+0.25' / '−0.25' (|S − 0.5| with the direction as its sign), 'n/a' when undefined."""
        if math.isnan(self.s):
            return "n/a"
        value = f"{self.deviation:.{digits}f}"
        return {1: "+", -1: "\u2212", 0: "\u00b1"}[self.sign] + value


def _as_vector(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name}: expected finite scores, found NaN/inf at {np.flatnonzero(~np.isfinite(arr)).tolist()}"
        )
    return arr


def ranking_similarity(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, ties: str = "half"
) -> RankingSimilarity:
    """S(a, b) over all unordered item pairs (n >= 2 items scored by both `a` and `b`)."""
    if ties not in TIE_RULES:
        raise ValueError(f"ties: expected one of {TIE_RULES}, got {ties!r}")
    x, y = _as_vector(a, "a"), _as_vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a, b: expected scores of the same items, got {x.size} and {y.size} values")
    if x.size < 2:
        raise ValueError(f"a: expected at least 2 items to rank, got {x.size}")
    i, j = np.triu_indices(x.size, k=1)
    prod = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    C, D = int((prod > 0).sum()), int((prod < 0).sum())
    tied = int(prod.size) - C - D
    if ties == "half":
        s = (C + 0.5 * tied) / prod.size
    elif ties == "sign":
        both = int(((x[i] == x[j]) & (y[i] == y[j])).sum())  # sign 0 = sign 0: agreement in eq. 9
        s = (C + both) / prod.size
    else:
        s = C / (C + D) if C + D else math.nan
    return RankingSimilarity(float(s), C, D, tied, ties)
