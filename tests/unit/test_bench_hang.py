"""bench-operator's hang phase (``hack/bench_hang.gaps``): how late an object's checks came, from its
``lastCheckAt`` stamps. The figure the issue asks for ("no object's analysis delayed by more than one
interval") is only as good as this arithmetic, including the case where checks simply stop."""

from __future__ import annotations

import math

from hack.bench_hang import gaps

INTERVAL = 30.0


def test_checks_on_time_give_gaps_of_one_interval_counted_from_the_last_stamp_before_the_window() -> None:
    stamps = {("ns", "a"): [70.0, 100.0, 130.5, 160.0, 190.2]}
    g = gaps(stamps, [("ns", "a")], start=110.0, end=200.0, interval=INTERVAL)
    assert g.checks == 3  # 130.5, 160 and 190.2 fall inside; 100 only opens the first gap
    assert [round(x, 1) for x in g.gaps] == [30.5, 29.5, 30.2]
    assert (g.late_objects, g.unchecked, g.objects) == (0, 0, 1)


def test_a_check_delayed_by_more_than_one_interval_marks_its_object_late() -> None:
    stamps = {("ns", "a"): [100.0, 130.0, 190.5, 220.0], ("ns", "b"): [100.0, 130.0, 160.0, 190.0, 220.0]}
    g = gaps(stamps, [("ns", "a"), ("ns", "b")], start=100.0, end=230.0, interval=INTERVAL)
    assert g.late_objects == 1
    assert max(g.gaps) == 60.5


def test_an_object_whose_checks_stopped_is_late_by_its_open_gap() -> None:
    # Its last check at 120: by the window's end it is 80 s overdue, though no two stamps are far apart.
    stamps = {("ns", "a"): [90.0, 120.0]}
    g = gaps(stamps, [("ns", "a")], start=100.0, end=200.0, interval=INTERVAL)
    assert g.gaps == [30.0, 80.0]
    assert g.late_objects == 1
    # An open gap shorter than the interval is a check not yet due: not counted.
    assert gaps(stamps, [("ns", "a")], start=100.0, end=140.0, interval=INTERVAL).gaps == [30.0]


def test_an_object_never_checked_is_counted_apart_and_an_empty_group_has_no_quantile() -> None:
    g = gaps({}, [("ns", "a")], start=0.0, end=100.0, interval=INTERVAL)
    assert (g.unchecked, g.checks, g.gaps) == (1, 0, [])
    assert math.isnan(g.quantile(0.99))
