"""Kubernetes time as both sides write and read it."""

from __future__ import annotations

import datetime as dt

import pytest

from labkit.core import kubetime


def test_written_as_the_api_writes_it_and_read_back() -> None:
    moment = dt.datetime(2024, 5, 1, 10, 0, 7, 900_000, tzinfo=dt.UTC)
    assert kubetime.format_time(moment) == "2024-05-01T10:00:07Z"
    assert kubetime.format_time(moment.timestamp()) == "2024-05-01T10:00:07Z"
    assert kubetime.format_micro_time(moment) == "2024-05-01T10:00:07.900000Z"
    assert kubetime.parse_time("2024-05-01T10:00:07Z") == moment.replace(microsecond=0)
    assert kubetime.parse_time("2024-05-01T12:00:07+02:00") == moment.replace(microsecond=0)
    assert kubetime.timestamp("2024-05-01T10:00:07.9Z") == pytest.approx(moment.timestamp())
    for missing in (None, "", "yesterday", 42):
        assert kubetime.parse_time(missing) is None


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (-0.5, "0s"), (59, "59s"), (119, "119s"), (125, "2m5s"), (600, "10m"),
    (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"), (400 * 86400, "400d"),
    (3 * 365 * 86400 + 86400, "3y1d"),
])
def test_ages_read_like_kubectl(seconds: float, shown: str) -> None:
    assert kubetime.human_duration(dt.timedelta(seconds=seconds)) == shown


def test_age_of_a_missing_timestamp_is_unknown() -> None:
    now = dt.datetime(2024, 5, 1, 10, 5, tzinfo=dt.UTC)
    assert kubetime.age("2024-05-01T10:00:00Z", now) == "5m"
    assert kubetime.age(None, now) == "<unknown>"
