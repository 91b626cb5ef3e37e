"""Tests of ``agecurriculum bins``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from test_bins import (
    brute_force,  # tests/ is on sys.path under pytest's default import mode
)
from test_bins_auto import brute_force as brute_force_auto

from agecurriculum.bins import ADIENCE_GROUPS, AgeBinOptimizer
from agecurriculum.cli.bins import read_annotations
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
    assert "give --ages FILE, --csv FILE, or --data ROOT" in capsys.readouterr().err


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


# ----- --csv and --n-bins: bins from annotation tables alone -----


def write_table(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_n_bins_agrees_with_brute_force(tmp_path, capsys):
    rng = np.random.default_rng(5)
    ages = rng.integers(0, 40, 300).tolist()
    decades = ["0-9", "10-19", "20-29", "30+"]
    labels = [str(a) for a in ages] + [decades[i] for i in rng.integers(0, 4, 200)]
    path = write_table(tmp_path, "file,age\n" + "".join(f"f{i}.jpg,{label}\n" for i, label in enumerate(labels)))
    result = run_json(capsys, "--csv", path, "--n-bins", 4, "--max-age", 40, "--min-width", 3)
    ranges = {}
    for label in labels[300:]:
        lo, _, hi = label.partition("-")
        key = (int(lo.rstrip("+")), int(hi) if hi else 40)
        ranges[key] = ranges.get(key, 0) + 1
    cuts, sizes, left_out = brute_force_auto(40, 4, 3, np.bincount(ages).tolist(), ranges)
    assert left_out == 0
    assert result["boundaries"] == list(cuts) and result["sizes"] == list(sizes)
    assert result["objective"] == pytest.approx(float(np.var(sizes)))
    assert set(result) == {"boundaries", "groups", "sizes", "objective"}


def test_csv_reads_tabs_group_column_offset_and_skips_missing(tmp_path, capsys):
    # Tab separated (Adience's fold files); the group column fills in where the age is empty; rows with neither are
    # skipped and counted on stderr.
    rows = ["age\tgroup", "4\t", "\t(25, 32)", "None\t", "\tNA", "30\t(25, 32)", "\t70+"]
    path = write_table(tmp_path, "\n".join(rows) + "\n", "folds.txt")
    argv = ["bins", "--csv", str(path), "--group-column", "group", "--age-offset", "1", "--n-bins", "3", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    # Offset by 1: exact 5 and 31, range 26-33, open range 71-100.
    assert result["sizes"] == [1, 2, 1] and result["boundaries"][0] in range(5, 25)
    assert result["groups"][1][0] <= 26 and result["groups"][1][1] >= 33 and result["groups"][2][0] <= 71
    assert captured.err == f"agecurriculum bins: note: 2 row(s) without an age skipped ({path}: 2)\n"


def test_csv_without_n_bins_uses_the_constraint_groups(tmp_path, capsys):
    path = write_table(tmp_path, 'age\n"(25, 32)"\n3\n70\n')
    result = run_json(capsys, "--csv", path)
    assert len(result["sizes"]) == 8 and result["sizes"][4] == 1 and sum(result["sizes"]) == 3


def test_several_csv_files_add_up(tmp_path, capsys):
    one = write_table(tmp_path, "age\n1\n2\n", "one.csv")
    two = write_table(tmp_path, "age\n50\n60\n", "two.csv")
    both = write_table(tmp_path, "age\n1\n2\n50\n60\n", "both.csv")
    assert run_json(capsys, "--csv", one, "--csv", two, "--n-bins", 2) == run_json(capsys, "--csv", both, "--n-bins", 2)


def test_left_out_needs_allow_left_out(tmp_path, capsys):
    path = write_table(tmp_path, 'age\n0-5\n0-5\n"(3, 9)"\n')
    assert main(["bins", "--csv", str(path), "--n-bins", "3", "--max-age", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"agecurriculum bins: error: {path}: no 3 bins") and "--allow-left-out" in err
    assert err.count("\n") == 1
    result = run_json(capsys, "--csv", path, "--n-bins", 3, "--max-age", 9, "--allow-left-out")
    assert sum(result["sizes"]) == 2
    assert main(["bins", "--csv", str(path), "--n-bins", "3", "--max-age", "9", "--allow-left-out"]) == 0
    captured = capsys.readouterr()
    assert "note: 1 image(s) labelled with a range that the bins cut are left out" in captured.err
    assert "left out (labelled with a range the bins cut): 1" in captured.out


N3 = ["--n-bins", "3"]


@pytest.mark.parametrize(
    ("content", "argv", "message"),
    [
        (
            "file,age\na.jpg,12\nb.jpg,young\n",
            N3,
            "labels.csv, line 3, column 'age': age label 'young' is not understood",
        ),
        (
            'file,age\na.jpg,"(30, 20)"\n',
            N3,
            "labels.csv, line 2, column 'age': age range '(30, 20)' starts after it ends",
        ),
        ("age,g\n,x\n", [*N3, "--group-column", "g"], "labels.csv, line 2, column 'g': age label 'x'"),
        (
            "age\n3\n",
            [*N3, "--age-offset", "-16"],
            "labels.csv, line 2, column 'age': age '3' with offset -16 is outside",
        ),
        ("age\n5000\n", N3, "labels.csv, line 2, column 'age': age '5000' with offset 0 is outside 0..1000"),
        ("file,age\na.jpg,1\nb.jpg,2,extra\n", N3, "labels.csv, line 3: another number of fields than the 2"),
        ("file,years\na.jpg,1\n", N3, "labels.csv: missing column 'age'"),
        ("age\n1\n", [*N3, "--group-column", "group"], "labels.csv: missing column 'group'"),
        ("", N3, "labels.csv: empty file"),
        ("age\n", N3, "labels.csv: no ages in column 'age' (0 row(s) without one)"),
        ("age\nNone\n\n", N3, "labels.csv: no ages in column 'age' (1 row(s) without one)"),
        (
            "age\n1\n",
            ["--n-bins", "102"],
            "--n-bins 102: 102 bins of at least 1 age(s) need 102 ages, but 0..100 has 101",
        ),
        ("age\n1\n", ["--n-bins", "10", "--min-width", "11"], "--n-bins 10: 10 bins of at least 11 age(s)"),
        ("age\n1\n", ["--n-bins", "0"], "n_bins must be >= 1"),
        ("age\n1\n", [*N3, "--groups", "0-2,5-9"], "--groups and --n-bins exclude each other"),
        ("age\n1\n", ["--min-width", "3"], "--min-width needs --n-bins"),
        ("age\n1\n", ["--allow-left-out"], "--allow-left-out needs --n-bins"),
        ("age\n20-29\n", [], "labels.csv: group_counts key (20, 29) names no constraint group"),
        # Issue 30.3: a field over csv.field_size_limit() (131,072 characters) was a _csv.Error traceback.
        ("age\n" + "x" * 200_000 + "\n", [], "labels.csv, line 2: field larger than field limit"),
        ("age\n1\n" + "x" * 200_000 + "\n", N3, "labels.csv, line 3: field larger than field limit"),
        ("x" * 200_000 + "\n1\n", N3, "labels.csv, line 1: field larger than field limit"),
    ],
)
def test_csv_errors_are_one_line_naming_the_file(tmp_path, capsys, content, argv, message):
    path = write_table(tmp_path, content)
    assert main(["bins", "--csv", str(path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("agecurriculum bins: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_missing_csv_exits_2_naming_it(tmp_path, capsys):
    assert main(["bins", "--csv", str(tmp_path / "nope.csv"), "--n-bins", "3"]) == 2
    assert f"{tmp_path / 'nope.csv'}: cannot read: No such file or directory" in capsys.readouterr().err


def test_n_bins_does_not_read_dataset_folders(tmp_path, capsys):
    assert main(["bins", "--data", str(tmp_path), "--n-bins", "3"]) == 2
    assert "--n-bins reads --csv or --ages" in capsys.readouterr().err


def test_ages_file_with_n_bins(tmp_path, capsys):
    data = {"ages": [1, 2, 3, 40, 41], "group_counts": {"20-29": 2, "more than 70": 1}}
    result = run_json(capsys, "--ages", write(tmp_path, data), "--n-bins", 3)
    assert sum(result["sizes"]) == 8


def test_csv_and_ages_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bins", "--ages", str(tmp_path / "a.json"), "--csv", str(tmp_path / "a.csv")])
    assert "not allowed with argument" in capsys.readouterr().err


def test_real_annotation_files(shared_data, capsys):
    # FairFace's tables (ranges only) and Adience's fold files (tab separated, ranges, stray exact ages, None) as
    # they are; each must keep every labelled image and match the optimizer on the reader's counts.
    for paths in (
        sorted((shared_data / "fairface").glob("fairface_label_*.csv")),
        sorted((shared_data / "adience").glob("fold_*_data.txt")),
    ):
        result = run_json(capsys, *itertools.chain.from_iterable(("--csv", p) for p in paths), "--n-bins", 8)
        counts = read_annotations(paths)
        expected = AgeBinOptimizer(n_bins=8).fit(counts.histogram, counts.group_counts)
        assert result == expected.to_dict()
        assert sum(result["sizes"]) == counts.histogram.sum() + sum(counts.group_counts.values())
