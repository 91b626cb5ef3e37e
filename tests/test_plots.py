import pytest
from PIL import Image

from agecurriculum.bins import PAPER_BINS
from agecurriculum.data.plots import plot_age_histograms, plot_counts_by_gender

LABELS = PAPER_BINS.labels()
BEFORE = {
    "utkface": [1200, 500, 900, 1500, 6000, 3500, 2800, 2000],
    "adience": [1400, 1300, 1100, 1900, 4400, 2000, 800, 870],
    "morph2": [0, 0, 50, 9000, 16000, 15000, 9000, 700],
}
AFTER = {name: [min(c, 2000) for c in counts] for name, counts in BEFORE.items()}


def opens_as_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        return image.size


def test_age_histograms_before_and_after_write_a_png(tmp_path):
    path = plot_age_histograms(BEFORE, AFTER, LABELS, tmp_path / "figs" / "balance.png")
    assert path == tmp_path / "figs" / "balance.png"
    width, height = opens_as_png(path)
    assert height > 300  # two rows of panels for three datasets
    single = plot_age_histograms({"utkface": BEFORE["utkface"]}, None, LABELS, tmp_path / "one.png")
    opens_as_png(single)


def test_counts_by_gender_writes_a_png(tmp_path):
    counts = {
        "utkface": {
            "male": [600, 250, 450, 700, 3000, 1900, 1600, 1100],
            "female": [600, 250, 450, 800, 3000, 1600, 1200, 900],
        }
    }
    opens_as_png(plot_counts_by_gender(counts, LABELS, tmp_path / "gender.png"))


def test_mismatched_counts_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="utkface before balancing: 3 counts for 8 age bins"):
        plot_age_histograms({"utkface": [1, 2, 3]}, None, LABELS, tmp_path / "x.png")
    with pytest.raises(ValueError, match="counts_after lacks the dataset 'adience'"):
        plot_age_histograms(BEFORE, {"utkface": AFTER["utkface"]}, LABELS, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
