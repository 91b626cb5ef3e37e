"""Tests of ``agecurriculum predict`` (and the help text of ``agecurriculum export``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal

import numpy as np
import pytest
from inference_helpers import ASTRONAUT_FACE, ASTRONAUT_PATCH, astronaut, iou, make_release
from PIL import Image
from skimage import data as skdata

from agecurriculum.cli.main import build_parser, main
from agecurriculum.cli.predict import expand_paths
from agecurriculum.inference import Predictor, release

RESULT_KEYS = ["path", "faces", "error"]


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """astronaut.png (one face), coffee.jpg (none), broken.jpg (not an image), sub/gray.png (none)."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    Image.fromarray(skdata.coffee()).resize((200, 150)).save(folder / "coffee.jpg")
    (folder / "broken.jpg").write_bytes(b"GIF89a truncated")
    (folder / "notes.txt").write_text("not an image file name: folders skip it")
    (folder / "sub").mkdir()
    Image.new("RGB", (90, 70), (120, 120, 120)).save(folder / "sub" / "gray.png")
    return folder


def run_json(capsys, *argv):
    status = main(["predict", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    results = [json.loads(line) for line in lines]  # every stdout line is one JSON object, nothing else
    assert out == "".join(line + "\n" for line in lines)
    return status, results, err


def test_json_folder_one_line_per_input(capsys, release_dir, photos):
    status, results, err = run_json(capsys, photos, "--model", release_dir)
    assert status == 0
    names = ["astronaut.png", "broken.jpg", "coffee.jpg", "sub/gray.png"]  # recursive, sorted, images only
    assert [r["path"] for r in results] == [str(photos / n) for n in names]
    assert all(list(r) == RESULT_KEYS for r in results)
    by_name = dict(zip(names, results))
    [face] = by_name["astronaut.png"]["faces"]
    assert iou(face["box"], ASTRONAUT_FACE) > 0.7
    assert list(face) == [
        "box",
        "score",
        "gender",
        "gender_prob",
        "age_bin",
        "age_range",
        "age_probs",
        "age",
        "warning",
    ]
    assert by_name["broken.jpg"]["faces"] == [] and "broken.jpg" in by_name["broken.jpg"]["error"]
    for name in ("coffee.jpg", "sub/gray.png"):
        assert by_name[name]["faces"] == [] and by_name[name]["error"] is None
    assert "4 input(s), 1 face(s), 1 error(s)" in err


def test_globs_and_files_expand(photos):
    files, unmatched = expand_paths(
        [
            str(photos / "*.jpg"),
            str(photos / "sub" / "gray.png"),
            str(photos / "*.jpg"),
            str(photos / "*.webp"),
            str(photos / "missing.png"),
        ]
    )
    assert files == [
        str(photos / "broken.jpg"),
        str(photos / "coffee.jpg"),
        str(photos / "sub" / "gray.png"),
        str(photos / "missing.png"),
    ]  # no duplicates; a missing file stays, to be reported
    assert unmatched == [str(photos / "*.webp"), str(photos / "missing.png")]
    assert expand_paths([str(photos / "**" / "*.png")])[0] == [
        str(photos / "astronaut.png"),
        str(photos / "sub" / "gray.png"),
    ]


@contextlib.contextmanager
def time_limit(seconds):
    """Fails the test when its body runs longer than ``seconds``, rather than hanging the suite."""

    def expire(*_):
        # pytest.fail's exception is a BaseException: glob swallows OSError (TimeoutError is one) and would go on.
        pytest.fail(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("links", [("self",), ("self", "back")])
def test_double_star_does_not_follow_folder_links(tmp_path, capsys, release_dir, links):
    # Issue 30.4: glob's ** followed loop/self -> . forty levels deep (41 inputs, one file), and with loop/back ->
    # ../loop as well it walked 2**40 paths and never finished. Like a folder argument, ** now skips folder links.
    loop = tmp_path / "loop"
    (loop / "sub").mkdir(parents=True)
    Image.fromarray(astronaut()).save(loop / "face.png")
    Image.new("RGB", (40, 30)).save(loop / "sub" / "gray.png")
    targets = {"self": ".", "back": "../loop"}
    for name in links:
        (loop / name).symlink_to(targets[name], target_is_directory=True)
    images = [str(loop / "face.png"), str(loop / "sub" / "gray.png")]
    with time_limit(20):
        assert expand_paths([str(loop / "**" / "*.png")]) == (images, [])
        assert expand_paths([str(loop / "**")]) == (images, [])
        assert expand_paths([str(loop)]) == (images, [])
        # Through a link named in the pattern, its files are still found, and a file met under two names is kept once.
        assert expand_paths([str(loop / "self" / "*.png"), str(loop / "**" / "*.png")]) == (
            [str(loop / "self" / "face.png"), images[1]],
            [],
        )
        status, results, _ = run_json(capsys, loop / "**" / "*.png", "--model", release_dir)
    assert status == 0 and [r["path"] for r in results] == images


def test_a_file_named_twice_through_a_link_is_read_once(tmp_path):
    (tmp_path / "face.png").write_bytes(b"")
    (tmp_path / "alias.png").symlink_to("face.png")
    (tmp_path / "hard.png").hardlink_to(tmp_path / "face.png")
    names = [str(tmp_path / n) for n in ("face.png", "alias.png", "hard.png", "missing.png")]
    assert expand_paths(names) == ([names[0], names[3]], [names[3]])


def test_aligned_json_and_missing_file(capsys, release_dir, photos):
    status, results, err = run_json(
        capsys,
        photos / "sub" / "gray.png",
        photos / "coffee.jpg",
        photos / "missing.png",
        "--aligned",
        "--model",
        release_dir,
        "--batch-size",
        "1",
    )
    assert status == 0
    assert [len(r["faces"]) for r in results] == [1, 1, 0]
    assert results[0]["faces"][0]["box"] == [0, 0, 90, 70] and results[0]["faces"][0]["score"] is None
    assert "file not found" in results[2]["error"]
    assert "missing.png" not in err  # its own result line says what is wrong, once


def test_no_match_at_all_fails(capsys, release_dir, tmp_path):
    assert main(["predict", str(tmp_path / "*.jpg"), str(tmp_path / "none.png"), "--model", str(release_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no input matches" in err


def test_text_output_and_draw(capsys, release_dir, photos, tmp_path):
    drawn = tmp_path / "drawn"
    assert (
        main(
            [
                "predict",
                str(photos / "astronaut.png"),
                str(photos / "coffee.jpg"),
                str(photos / "broken.jpg"),
                "--model",
                str(release_dir),
                "--draw",
                str(drawn),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{photos / 'astronaut.png'}: face 1 at (") and " y)" in lines[0]
    assert lines[1] == f"{photos / 'coffee.jpg'}: no face found"
    assert lines[2].startswith(f"{photos / 'broken.jpg'}: error: ")
    assert sorted(p.name for p in drawn.iterdir()) == ["astronaut.png", "coffee.jpg"]
    annotated = np.asarray(Image.open(drawn / "astronaut.png").convert("RGB"))
    assert annotated.shape == astronaut().shape
    assert not np.array_equal(annotated, astronaut())  # something was drawn


def test_missing_default_model(capsys, monkeypatch, tmp_path, photos):
    monkeypatch.setattr(release, "DEFAULT_RELEASE_DIR", tmp_path / "default")
    assert main(["predict", str(photos / "coffee.jpg")]) == 2
    assert "no default model is installed" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "export"])
def test_every_option_has_help(command):
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subparsers.choices[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help text"


def test_detection_options(capsys, release_dir, photos):
    photo = photos / "astronaut.png"
    # Without the CNN re-check, the HOG detector's false face on the mission patch (found at upsample 1) comes out too.
    status, [result], _ = run_json(capsys, photo, "--model", release_dir, "--no-verify", "--upsample", "1")
    assert status == 0
    boxes = [f["box"] for f in result["faces"]]
    assert any(iou(b, ASTRONAUT_FACE) > 0.7 for b in boxes) and any(iou(b, ASTRONAUT_PATCH) > 0.3 for b in boxes)
    # Her face (about 90 px) is large enough for the detector without upsampling.
    status, [result], _ = run_json(capsys, photo, "--model", release_dir, "--upsample", "0")
    assert status == 0 and [iou(f["box"], ASTRONAUT_FACE) > 0.7 for f in result["faces"]] == [True]
    # The default (auto upsampling, doubtful boxes re-checked) and every box re-checked give her face alone.
    for more in ([], ["--upsample", "auto"], ["--verify-below", "inf", "--upsample", "1"]):
        status, [result], _ = run_json(capsys, photo, "--model", release_dir, *more)
        assert status == 0 and [iou(f["box"], ASTRONAUT_FACE) > 0.7 for f in result["faces"]] == [True]
    for bad, message in (
        [("--upsample", "-1"), "argument --upsample: must be auto or at least 0, got -1"],
        [("--upsample", "two"), "argument --upsample: expected auto or an integer >= 0, got 'two'"],
        [("--workers", "0"), "--workers must be at least 1, got 0"],
        [("--verify-below", "nan"), "--verify-below must be a number"],
    ):
        try:  # argparse rejects bad --upsample values itself, by SystemExit
            status = main(["predict", str(photo), "--model", str(release_dir), *bad])
        except SystemExit as exit_:
            status = exit_.code
        assert status == 2 and message in capsys.readouterr().err


def test_flip_is_on_by_default_and_no_flip_turns_it_off(capsys, release_dir, tmp_path):
    crop = tmp_path / "crop.png"
    Image.fromarray(astronaut()[60:180, 160:280]).save(crop)
    _, [plain], _ = run_json(capsys, crop, "--aligned", "--model", release_dir, "--no-flip")
    status, [default], _ = run_json(capsys, crop, "--aligned", "--model", release_dir)
    _, [flipped], _ = run_json(capsys, crop, "--aligned", "--model", release_dir, "--flip")
    assert status == 0 and list(default) == RESULT_KEYS and list(default["faces"][0]) == list(plain["faces"][0])
    [expected] = Predictor.from_release(release_dir, flip=True).predict([crop], aligned=True)
    [unflipped] = Predictor.from_release(release_dir, flip=False).predict([crop], aligned=True)
    assert default == flipped == expected and plain == unflipped  # the option reaches the predictor
    assert default["faces"][0]["age_probs"] != plain["faces"][0]["age_probs"]
