"""agecurriculum.data.write_sample_data: a data root the loaders read whole, labels over every bin and gender."""

from collections import Counter

import pytest
from PIL import Image

from agecurriculum.bins import PAPER_BINS
from agecurriculum.data import FEMALE, MALE, write_sample_data
from agecurriculum.data.sources import discover


def test_the_sample_data_root_loads_whole_with_every_bin_and_both_genders(tmp_path):
    root = write_sample_data(tmp_path / "sample")
    assert root == tmp_path / "sample"
    found = discover(root)
    assert list(found) == ["utkface", "morph2"]
    utkface, morph2 = found["utkface"], found["morph2"]
    assert len(utkface.records) == 48 and len(morph2.records) == 32
    assert not utkface.report.dropped and not morph2.report.dropped
    assert not utkface.report.cleaned  # perfect UTKFace names: nothing tolerated

    records = utkface.records + morph2.records
    cells = Counter((PAPER_BINS.bin_of(r.exact_age), r.gender) for r in records)
    assert {(b, g) for b in range(8) for g in (MALE, FEMALE)} <= set(cells), cells
    assert len({r.subject for r in morph2.records}) == 16  # two pictures a subject
    assert all(16 <= r.exact_age <= 77 for r in morph2.records)  # MORPH-II's age range
    assert len({r.path.read_bytes() for r in records}) == len(records)  # no two files alike

    assert Image.open(utkface.records[0].path).size == (100, 100)
    assert Image.open(morph2.records[0].path).size == (160, 160)

    # Writing again rewrites the same files; other counts give other sizes.
    write_sample_data(root)
    assert len(list((root / "utkface" / "UTKFace").iterdir())) == 48
    small = discover(write_sample_data(tmp_path / "small", utkface=5, morph2=3))
    assert len(small["utkface"].records) == 5 and len(small["morph2"].records) == 3


def test_negative_counts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="utkface=-1"):
        write_sample_data(tmp_path, utkface=-1)
