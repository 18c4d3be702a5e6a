"""Paired comparisons over seeds: a method against a reference run with the same seeds."""
from __future__ import annotations

import math
import statistics

import scipy.stats


def paired_difference(values: list[float], reference: list[float], *, scale: float = 100.0,
                      test_train_ratio: float = 0.0) -> dict:
    """Seeds on which `values` is above / level with / below the same seed's `reference`, and the
    paired difference (× `scale`: accuracy points by default): its mean over seeds and a 95 %
    confidence interval (Student t over the per-seed differences; None with a single seed).

    The n differences d are paired runs (seeds, or the test folds of a cross-validation):

        mean ± t_{0.975, n-1} · s_d · √(1/n + ρ)                 s_d: standard deviation of the d

    ρ = `test_train_ratio` = 0 for independent runs (the Student t interval). Test folds of several
    shuffled k-fold splits of one table share rows, and their differences are correlated; ρ = n_test /
    n_train = 1/(k - 1) is the corrected resampled t of Nadeau and Bengio (2003), in the repeated-k-fold
    form of Bouckaert and Frank (2004), which widens the interval for it."""
    if len(values) != len(reference) or not values:
        raise ValueError(f"paired_difference needs two equally long, non-empty lists, got {len(values)} and "
                         f"{len(reference)} values")
    for name, scores in (("values", values), ("reference", reference)):
        bad = [v for v in scores if not math.isfinite(v)]
        if bad:
            raise ValueError(f"paired_difference: {name} must be finite numbers, got {bad[:3]}")
    if not 0 <= test_train_ratio < float("inf"):
        raise ValueError(f"paired_difference: test_train_ratio must be a number >= 0 (n_test / n_train), "
                         f"got {test_train_ratio!r}")
    pairs = list(zip(values, reference))
    differences = [scale * (a - b) for a, b in pairs]
    mean = statistics.mean(differences)
    interval = None
    if len(differences) > 1:
        n = len(differences)     # s/√n · √(1 + nρ) = s · √(1/n + ρ); with ρ = 0 exactly s/√n
        half = (scipy.stats.t.ppf(0.975, n - 1) * statistics.stdev(differences) / n ** 0.5
                * (1 + n * test_train_ratio) ** 0.5)
        interval = [round(float(mean - half), 3), round(float(mean + half), 3)]
    return {"above": sum(a > b for a, b in pairs), "level": sum(a == b for a, b in pairs),
            "below": sum(a < b for a, b in pairs), "mean_difference_points": round(mean, 3) + 0.0,   # + 0.0: a tie is 0.0, not -0.0
            "ci95_points": interval}


def format_paired(difference: dict | None) -> str:
    """A paired_difference as text: "+0.28 [-0.12, +0.68]" (no interval with one seed; "" for None)."""
    if difference is None:
        return ""
    interval = difference["ci95_points"]
    text = f"{difference['mean_difference_points']:+.2f}"
    return text + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")
