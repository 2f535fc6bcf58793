"""The experiments benchmark's own arithmetic: paired run ratios and the timing of an experiment's work."""

import math
import statistics
import time

import pytest
from scipy import stats

from tailor_lab.bench.experiments import _Stopwatch, format_table, paired_ratio


def test_paired_ratio_is_the_t_interval_of_the_log_ratios():
    on = [105.0, 98.0, 112.0, 101.0, 99.0, 107.0]
    off = [100.0, 97.0, 104.0, 100.0, 96.0, 101.0]
    logs = [math.log(a / b) for a, b in zip(on, off)]
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=sum(logs) / len(logs), scale=stats.sem(logs))

    found = paired_ratio(on, off)

    assert found["ratio"] == pytest.approx(math.exp(sum(logs) / len(logs)))
    assert (found["low"], found["high"]) == pytest.approx((math.exp(low), math.exp(high)))
    assert found["median"] == pytest.approx(statistics.median(a / b for a, b in zip(on, off)))


def test_paired_ratio_pairs_run_with_run_not_the_pooled_medians():
    # Each run is 10% above the one beside it while the machine drifts threefold between runs.
    off = [100.0, 300.0, 150.0, 250.0]
    on = [x * 1.1 for x in off]

    found = paired_ratio(on, off)

    assert found["ratio"] == pytest.approx(1.1)
    assert found["low"] == pytest.approx(1.1) and found["high"] == pytest.approx(1.1)


def test_paired_ratio_needs_two_runs():
    assert paired_ratio([1.0], [1.0]) is None


def _spin(seconds):
    """Busy for `seconds` of this thread's CPU time."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass
    return seconds


def test_stopwatch_adds_the_cpu_time_of_the_calls_it_wraps_until_reset():
    watch = _Stopwatch()
    spin = watch.timed(_spin)

    assert spin(0.01) == 0.01
    spin(0.01)
    watch.timed(time.sleep)(0.05)  # waiting is not work
    assert 0.02 <= watch.spent < 0.04
    watch.reset()
    assert watch.spent == 0.0


def test_stopwatch_counts_a_call_that_raises():
    watch = _Stopwatch()

    def failing():
        _spin(0.01)
        raise ValueError("no")

    with pytest.raises(ValueError):
        watch.timed(failing)()
    assert watch.spent >= 0.01


def test_table_shows_the_experiments_own_work_and_the_paired_interval():
    report = {
        "feed": {"rows": {"no experiment": {"requests": 10, "p50_ms": 5.0, "p99_ms": 9.0, "cpu_p50_ms": 4.5,
                                           "cpu_p99_ms": 8.0}},
                 "experiment_work": {"requests": 10, "p50_us": 70.0, "p99_us": 130.0, "max_us": 400.0},
                 "assign_us": 4.0,
                 "interleaving_work": {"requests": 10, "items": 20, "team draft": {"p50_us": 20.0, "p99_us": 30.0},
                                       "interleave": {"p50_us": 90.0, "p99_us": 120.0}}},
        "ingest": {"events": 100, "attributed_events": 30, "runs": 3,
                   "rows": {"attribution off": {"median_us": 40.0, "fastest_us": 38.0, "vs_off_median": 0.0,
                                                "vs_off_paired": None},
                            "attribution on": {"median_us": 41.0, "fastest_us": 39.0, "vs_off_median": 0.025,
                                               "vs_off_paired": {"ratio": 1.02, "low": 0.99, "high": 1.05,
                                                                 "median": 1.02}}}},
    }

    table = format_table(report)

    assert "p99 130.0 us, largest 400.0 us" in table
    assert "team draft p50 20.0 us, p99 30.0 us; with its slots' probabilities and credits p50 90.0 us" in table
    assert "+2.0% [-1.0%, +5.0%]" in table
