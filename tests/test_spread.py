"""How repeated measurements print: mean ± std (n), and a single run without ±."""

from avdistill.spread import mean_std


def test_several_runs_print_mean_std_and_count():
    assert mean_std([0.5, 0.7]) == "60.00 ± 10.00 (n=2)"  # population std, in percent
    assert mean_std([3.0, 5.0], scale=1, digits=1, count=False) == "4.0 ± 1.0"


def test_a_single_run_has_no_spread():
    assert mean_std([0.9885]) == "98.85 (n=1)"
    assert mean_std([0.25], count=False) == "25.00"
