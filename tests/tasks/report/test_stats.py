"""Statistics over seeds on inputs whose answers are worked out by hand."""

import math

import pytest

from tasks.report.stats import paired_test, summarize


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
