"""nslviz.analysis.paired: paired differences and their intervals."""
import pytest
import scipy.stats

from nslviz.analysis.paired import format_paired, paired_difference


def test_a_paired_difference_counts_the_pairs_and_gives_a_student_t_interval():
    result = paired_difference([0.9, 0.8, 0.7], [0.8, 0.8, 0.8])       # differences +10, 0, -10 points
    half = scipy.stats.t.ppf(0.975, 2) * 10 / 3 ** 0.5                 # sd 10 points, 3 pairs
    assert result == {"above": 1, "level": 1, "below": 1, "mean_difference_points": 0.0,
                      "ci95_points": [round(-half, 3), round(half, 3)]}
    assert paired_difference([0.9], [0.8])["ci95_points"] is None      # one pair: no interval
    assert format_paired(result) == f"+0.00 [{-half:+.2f}, {half:+.2f}]"


def test_folds_that_share_rows_widen_the_interval_by_the_corrected_resampled_t():
    # 5-fold splits: n_test / n_train = 1/4; the interval is t · s · √(1/n + 1/4), not t · s / √n
    values, reference = [0.9, 0.8, 0.7, 0.8], [0.8, 0.8, 0.8, 0.7]     # +10, 0, -10, +10 points
    plain = paired_difference(values, reference)
    corrected = paired_difference(values, reference, test_train_ratio=0.25)
    s = (sum((d - 2.5) ** 2 for d in (10, 0, -10, 10)) / 3) ** 0.5
    half = scipy.stats.t.ppf(0.975, 3) * s * (1 / 4 + 1 / 4) ** 0.5
    assert corrected["mean_difference_points"] == plain["mean_difference_points"] == 2.5
    assert corrected["ci95_points"] == pytest.approx([2.5 - half, 2.5 + half], abs=1e-3)
    assert corrected["ci95_points"][1] - corrected["ci95_points"][0] == pytest.approx(
        (plain["ci95_points"][1] - plain["ci95_points"][0]) * 2 ** 0.5, abs=2e-3)       # √(1/2) / √(1/4)


@pytest.mark.parametrize("ratio", [-0.1, float("inf"), float("nan")])
def test_a_bad_test_train_ratio_is_named(ratio):
    with pytest.raises(ValueError, match=f"test_train_ratio must be a number >= 0 .* got {ratio}"):
        paired_difference([0.9, 0.8], [0.8, 0.8], test_train_ratio=ratio)


def test_a_paired_difference_refuses_non_finite_scores_and_returns_plain_floats():
    with pytest.raises(ValueError, match=r"reference must be finite numbers, got \[nan\]"):
        paired_difference([0.9, 0.8], [0.8, float("nan")])
    interval = paired_difference([0.9, 0.8, 0.7], [0.8, 0.8, 0.8])["ci95_points"]
    assert all(type(bound) is float for bound in interval)                  # JSON-ready, like the mean
