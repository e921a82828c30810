"""Temporary names: exactly our own format is recognised, and only abandoned ones may go."""

from __future__ import annotations

import os

from sbatchman.temporaries import MAX_AGE_S, Temporaries, parse

NOW = 1_800_000_000


def test_a_generated_name_parses_back_and_any_edit_breaks_it() -> None:
    temps = Temporaries(created=NOW, pid=4242, origin_id="0123456789ab", push="deadbeef")
    name = temps.name("job.sh")
    assert name.startswith(".job.sh.") and parse(name) == (NOW, "0123456789ab", 4242)
    assert parse(name.replace("job", "jab")) is None  # the check covers the stem
    assert parse(name.replace("-1092", "-1093")) is None  # and every field
    assert parse(name + "\n") is None and parse(name[1:]) is None
    assert parse(".job.sh.0123abcd.sbm-part") is None  # the old style is never ours


def test_age_decides_for_other_machines_and_liveness_for_this_one() -> None:
    judge = Temporaries(created=NOW, origin_id="0123456789ab")
    elsewhere = Temporaries(created=NOW, origin_id="ba9876543210").name("x")
    assert not judge.abandoned(elsewhere, now=NOW + MAX_AGE_S)
    assert judge.abandoned(elsewhere, now=NOW + MAX_AGE_S + 1)
    assert judge.abandoned(elsewhere, now=NOW - MAX_AGE_S - 1)  # a clock a day ahead
    unknown = Temporaries(created=NOW, origin_id="0" * 12, pid=1 << 30).name("x")
    assert not judge.abandoned(unknown, now=NOW)  # no origin: no liveness check either
    mine = Temporaries(created=NOW, origin_id="0123456789ab", pid=os.getpid()).name("x")
    assert not judge.abandoned(mine, now=NOW)


def test_names_fit_in_255_bytes_with_the_stem_cut_between_characters() -> None:
    temps = Temporaries(created=(1 << 48) - 1, pid=(1 << 32) - 1)  # every field at its widest
    name = temps.name("東" * 90)
    assert len(name.encode()) <= 255 and parse(name) is not None


def test_long_names_that_share_their_first_bytes_get_different_temporaries() -> None:
    temps = Temporaries(created=NOW, pid=os.getpid())
    names = {temps.name("L" * 200 + f"_{i}.txt") for i in range(3)}
    assert len(names) == 3
    assert all(len(n.encode()) <= 255 and parse(n) is not None for n in names)
