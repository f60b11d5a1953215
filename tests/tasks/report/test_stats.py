"""Statistics over seeds on inputs whose answers are worked out by hand."""

import math

import numpy as np
import pytest

from tasks.report.stats import holm, mcnemar, paired_test, summarize


def test_mean_std_and_95_percent_t_interval_by_hand():
    # mean 0.82; deviations -0.02, 0, 0.02 -> s^2 = 0.0008 / 2, s = 0.02;
    # t(0.975, 2) = 4.302653 -> half width 4.302653 * 0.02 / sqrt(3) = 0.049683
    s = summarize([0.80, 0.82, 0.84])
    assert s.n == 3
    assert s.mean == pytest.approx(0.82)
    assert s.std == pytest.approx(0.02)
    assert s.ci_low == pytest.approx(0.82 - 0.049683, abs=1e-6)
    assert s.ci_high == pytest.approx(0.82 + 0.049683, abs=1e-6)


def test_two_values_use_t_with_one_degree_of_freedom():
    # s = 0.1 / sqrt(2) = 0.070711; t(0.975, 1) = 12.706205; half = 12.706205 * 0.070711 / sqrt 2
    s = summarize([0.5, 0.6])
    assert s.std == pytest.approx(0.0707107, abs=1e-6)
    assert s.ci_high - s.mean == pytest.approx(0.635310, abs=1e-5)


def test_one_value_has_no_spread_rather_than_zero():
    s = summarize([0.9])
    assert (s.n, s.mean) == (1, 0.9)
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_nan_values_are_left_out_and_none_at_all_is_nan():
    assert summarize([0.8, math.nan, 0.84]).mean == pytest.approx(0.82)
    empty = summarize([math.nan])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_paired_t_test_by_hand():
    # differences 0.01, 0.02, 0.01: mean 0.013333, sd 0.0057735, t = 0.013333 / (sd / sqrt 3) = 4
    # with 2 degrees of freedom the two-sided p is 1 - t / sqrt(2 + t^2) = 1 - 4 / sqrt(18)
    c = paired_test({0: 0.85, 1: 0.87, 2: 0.86}, {0: 0.84, 1: 0.85, 2: 0.85})
    assert c.test == "paired t-test"
    assert c.n_pairs == 3
    assert c.mean_difference == pytest.approx(0.013333, abs=1e-6)
    assert c.statistic == pytest.approx(4.0)
    assert c.p_value == pytest.approx(1 - 4 / math.sqrt(18))  # 0.0572
    assert not c.significant and c.note == ""


def test_a_clear_difference_is_significant():
    c = paired_test({0: 0.90, 1: 0.91, 2: 0.92, 3: 0.90}, {0: 0.80, 1: 0.80, 2: 0.81, 3: 0.81})
    assert c.p_value < 0.01 and c.significant and c.mean_difference > 0


def test_only_seeds_both_trained_soundly_are_paired():
    c = paired_test(
        {0: 0.85, 1: 0.87, 2: 0.86, 3: 0.99}, {0: 0.84, 1: 0.85, 2: 0.85, 3: math.nan, 4: 0.1}
    )
    assert c.n_pairs == 3
    assert c.p_value == pytest.approx(1 - 4 / math.sqrt(18))


def test_fewer_than_two_pairs_give_no_p_value_and_say_why():
    one = paired_test({0: 0.9}, {0: 0.8})
    assert one.p_value is None and one.n_pairs == 1
    assert one.mean_difference == pytest.approx(0.1)
    assert "one seed" in one.note
    none = paired_test({0: 0.9}, {1: 0.8})
    assert none.p_value is None and none.n_pairs == 0 and "no seed" in none.note


def test_zero_variance_differences_give_no_p_value_and_say_why():
    same = paired_test({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8})
    assert same.p_value is None and same.note == "identical on every seed"
    shifted = paired_test({0: 0.9, 1: 0.8}, {0: 0.85, 1: 0.75})
    assert shifted.p_value is None and "same difference on all 2 seeds" in shifted.note
    assert shifted.mean_difference == pytest.approx(0.05)


def test_differences_equal_but_for_float_rounding_count_as_no_spread():
    # 0.5 - 0.49 and 0.5002 - 0.4902 are both 0.01 but differ in the last bits as floats
    assert 0.5 - 0.49 != 0.5002 - 0.4902
    c = paired_test({0: 0.5, 1: 0.5002}, {0: 0.49, 1: 0.4902})
    assert c.p_value is None and "same difference" in c.note


def _pairs(both_right: int, only_first: int, only_second: int, both_wrong: int):
    """Two networks' right/wrong on the same images, from the cells of their 2 x 2 table."""
    first = [True] * both_right + [True] * only_first + [False] * only_second
    second = [True] * both_right + [False] * only_first + [True] * only_second
    first += [False] * both_wrong
    second += [False] * both_wrong
    return np.array(first), np.array(second)


def test_mcnemar_exact_p_value_of_a_hand_made_table():
    # 100 images: both right on 70, only the first on 10, only the second on 2, both wrong on 18.
    # Only the 12 discordant images count; under "equally accurate" each goes either way with
    # probability 1/2, so the two-sided exact p is 2 * P(X <= 2), X ~ Binomial(12, 1/2):
    # 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * (1 + 12 + 66) / 4096 = 158 / 4096
    first, second = _pairs(70, 10, 2, 18)
    c = mcnemar(first, second)
    assert c.test == "McNemar"
    assert c.discordant == (10, 2)
    assert c.p_value == pytest.approx(158 / 4096)  # 0.0386
    assert c.mean_difference == pytest.approx((10 - 2) / 100)  # 0.80 - 0.72
    assert c.significant
    # swapping the two networks changes the sign of the difference, not the p-value
    swapped = mcnemar(second, first)
    assert swapped.discordant == (2, 10) and swapped.p_value == pytest.approx(158 / 4096)


def test_mcnemar_without_discordant_images_cannot_tell_them_apart():
    first, second = _pairs(50, 0, 0, 50)
    c = mcnemar(first, second)
    assert c.p_value == 1.0 and c.discordant == (0, 0) and not c.significant
    # 3 against 2 discordant images: p = 1 (the two-sided binomial of 3 of 5 at 1/2)
    assert mcnemar(*_pairs(50, 3, 2, 45)).p_value == pytest.approx(1.0)


def test_mcnemar_pools_seeds_image_by_image():
    # one seed as a (1, n) row is McNemar itself
    first, second = _pairs(70, 10, 2, 18)
    assert mcnemar(first[None, :], second[None, :]).p_value == pytest.approx(158 / 4096)
    # two seeds: an image counts for the side that got it right on more seeds. Seed 1 repeats
    # seed 0 except that images 70..71 (only-first on seed 0) go to the second: those two images
    # are then right once on each side (a draw) and drop out, leaving 8 against 2 discordant.
    seed1_first, seed1_second = first.copy(), second.copy()
    seed1_first[70:72], seed1_second[70:72] = False, True
    c = mcnemar(np.stack([first, seed1_first]), np.stack([second, seed1_second]))
    assert c.n_pairs == 2 and c.discordant == (8, 2)
    # 2 * (1 + 10 + 45) / 1024
    assert c.p_value == pytest.approx(2 * 56 / 1024)


def test_mcnemar_refuses_predictions_of_different_test_sets():
    with pytest.raises(ValueError, match="one shape"):
        mcnemar(np.ones(10, bool), np.ones(12, bool))


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> made non-decreasing: 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = holm([0.02, math.nan])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])  # NaN does not count
    assert holm([]) == []
