"""Tests of ``agecurriculum bins``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bins import (
    brute_force,  # tests/ is on sys.path under pytest's default import mode
)

from agecurriculum.bins import ADIENCE_GROUPS
from agecurriculum.cli.main import main


def write(tmp_path, data, name="ages.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def run_json(capsys, *argv):
    assert main(["bins", *map(str, argv), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one line
    return json.loads(out)


def test_json_list_of_ages_agrees_with_brute_force(tmp_path, capsys):
    ages = np.random.default_rng(11).integers(0, 110, 3000).tolist()
    result = run_json(capsys, "--ages", write(tmp_path, ages))
    histogram = np.bincount(ages)
    cuts, sizes, variance = brute_force(ADIENCE_GROUPS, 100, histogram)
    assert set(result) == {"boundaries", "groups", "sizes", "objective"}
    assert result["boundaries"] == list(cuts)
    assert result["sizes"] == list(sizes)
    assert result["objective"] == pytest.approx(variance)
    assert result["groups"][0] == [0, cuts[0]] and result["groups"][-1] == [cuts[-1] + 1, 100]


def test_json_dict_with_group_counts(tmp_path, capsys):
    ages = [1, 1, 5, 9, 17, 17, 22, 30]
    data = {"ages": ages, "group_counts": {"0-4": 3, "10-12": 6}}
    result = run_json(capsys, "--ages", write(tmp_path, data), "--groups", "0-4,10-12,25-30", "--max-age", "30")
    cuts, sizes, variance = brute_force([(0, 4), (10, 12), (25, 30)], 30, np.bincount(ages), [3, 6, 0])
    assert result["boundaries"] == list(cuts)
    assert result["sizes"] == list(sizes)
    assert result["objective"] == pytest.approx(variance)


def test_group_counts_without_ages(tmp_path, capsys):
    result = run_json(capsys, "--ages", write(tmp_path, {"ages": [], "group_counts": {"25-32": 120}}))
    assert result["sizes"] == [0, 0, 0, 0, 120, 0, 0, 0]


def test_table_output(tmp_path, capsys):
    assert main(["bins", "--ages", str(write(tmp_path, [1, 2, 3, 40, 70]))]) == 0
    out = capsys.readouterr().out
    assert "0-2" in out and "variance" in out
    assert len(out.strip().splitlines()) == 1 + 8 + 1  # header, one row per group, variance


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2,", "not valid JSON"),
        ('{"age": [1]}', "unknown field"),
        ('{"group_counts": {}}', "missing field 'ages'"),
        ('{"ages": 5}', "field 'ages' must be a list"),
        ('"hello"', "top level must be a list"),
        ('{"ages": [1], "group_counts": [1]}', "field 'group_counts' must be an object"),
        ('{"ages": [1], "group_counts": {"26-32": 1}}', "'26-32' names no constraint group"),
        ('{"ages": [1, -3]}', "field 'ages': age 1 is negative"),
        ('{"ages": [1, "x"]}', "field 'ages': age 1 must be an integer"),
        ("[]", "nothing to balance"),
    ],
)
def test_malformed_file_exits_2_naming_file(tmp_path, capsys, content, message):
    path = write(tmp_path, content, "bad_ages.json")
    assert main(["bins", "--ages", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad_ages.json" in err and message in err
    assert err.count("\n") == 1


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["bins", "--ages", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


@pytest.mark.parametrize(("groups", "message"), [("0-2,x", "--groups"), ("4-6,0-2", "0-2"), ("0-2,60-120", "60-120")])
def test_bad_groups_exit_2(tmp_path, capsys, groups, message):
    assert main(["bins", "--ages", str(write(tmp_path, [1])), "--groups", groups]) == 2
    assert message in capsys.readouterr().err


def test_a_source_of_ages_is_required(capsys):
    assert main(["bins"]) == 2
    assert "give --ages FILE, or --data ROOT" in capsys.readouterr().err


def test_ages_and_data_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bins", "--ages", str(tmp_path / "a.json"), "--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[true, false, 20]", "top level: age 0 must be an integer, got True"),
        ('{"ages": [20, 30, false]}', "field 'ages': age 2 must be an integer, got False"),
        ('{"ages": [20, null]}', "field 'ages': age 1 must be an integer, got None"),
        ('{"ages": [20, 20.5]}', "field 'ages': age 1 must be an integer, got 20.5"),
        ('{"ages": [20, "20"]}', "field 'ages': age 1 must be an integer, got '20'"),
        ("[100000000000000000000000000000]", "top level: age 0 = 100000000000000000000000000000 exceeds 1000"),
        ('{"ages": [3, 1e400]}', "field 'ages': age 1 must be an integer, got inf"),
        ('{"ages": [3, 1e29]}', "field 'ages': age 1 = 1e+29 exceeds 1000"),
        ('{"ages": [1], "group_counts": {"0-2": true}}', "group_counts['0-2'] must be an integer, got True"),
        ('{"ages": [1], "group_counts": {"0-2": null}}', "group_counts['0-2'] must be an integer, got None"),
        ('{"ages": [1], "group_counts": {"0-2": 2.5}}', "group_counts['0-2'] must be an integer, got 2.5"),
        ('{"ages": [1], "group_counts": {"0-2": -1}}', "group_counts['0-2'] is negative"),
        ('{"ages": [1], "group_counts": {"0-2": 100000000000000000000000000000}}', "exceed"),
        ('{"ages": [1], "group_counts": {"young": 3}}', "group_counts key 'young' names no constraint group"),
        ('{"ages": [1], "group_counts": {"0-2": 1, "00-2": 1}}', "names constraint group 0 twice"),
    ],
)
def test_ages_file_refuses_booleans_huge_ages_and_bad_group_counts(tmp_path, capsys, content, message):
    path = write(tmp_path, content, "ages.json")
    assert main(["bins", "--ages", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"agecurriculum bins: error: {path}: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_ages_file_takes_integral_floats_as_ages(tmp_path, capsys):
    as_ints = run_json(capsys, "--ages", write(tmp_path, [1, 5, 20, 20, 70]))
    as_floats = run_json(capsys, "--ages", write(tmp_path, "[1.0, 5, 20.0, 2e1, 70]", "floats.json"))
    assert as_floats == as_ints
