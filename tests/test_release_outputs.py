"""The shipped model answers exactly as it did when ``tests/data/release_outputs.json`` was written.

The stored values were computed from the release in ``agecurriculum/weights/default`` when it was shipped (and
written again, with the command below, whenever it is replaced); any change to how a release is read (its
preprocessing, bins, representative ages) or to the network shows up here as a difference. The crops are generated
in this file from scikit-image's sample photos and a seeded generator, so the test needs no data folder.

To write the file again after a deliberate change of the shipped model::

    AGECURRICULUM_WRITE_RELEASE_OUTPUTS=1 .venv/bin/pytest tests/test_release_outputs.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from agecurriculum.inference import DEFAULT_RELEASE_DIR, Predictor

STORED = Path(__file__).resolve().parent / "data" / "release_outputs.json"
TOLERANCE = 1e-5  # float32 network, float64 softmax: thread counts move the last digits only


def crops() -> dict[str, np.ndarray]:
    """Fixed ``(H, W, 3)`` uint8 crops: faces at several framings and sizes, non-faces, a seeded noise image."""
    astronaut = skdata.astronaut()
    rng = np.random.default_rng(18)
    gray = skdata.camera()
    ramp = np.linspace(0, 255, 96, dtype=np.float64)
    return {
        "astronaut_face": astronaut[30:230, 120:320],
        "astronaut_face_tight": astronaut[70:175, 165:275],
        "astronaut_face_wide": astronaut[0:300, 70:370],
        "astronaut_face_small": astronaut[30:230:4, 120:320:4],
        "astronaut_not_square": astronaut[20:240, 130:310],
        "camera_gray": np.repeat(gray[40:240, 180:380, None], 3, axis=2),
        "chelsea_cat": skdata.chelsea()[0:300, 50:350],
        "coffee": skdata.coffee()[50:350, 150:450],
        "noise": rng.integers(0, 256, size=(80, 80, 3), dtype=np.uint8),
        "ramp": np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 255 - ramp[:, None]), axis=2).astype(
            np.uint8
        ),
    }


def compute() -> dict[str, dict]:
    """The shipped release's probabilities (full precision) and the predictor's summary for every crop."""
    predictor = Predictor.from_release(None, backend="torch", verify=False, flip=False)  # the weights as stored
    named = crops()
    inputs = np.stack(list(predictor.network_inputs(named.values(), aligned=True)))
    age_probs, gender_probs = predictor.backend(inputs)
    results = predictor.predict(list(named.values()), aligned=True)
    outputs = {}
    for i, (name, result) in enumerate(zip(named, results)):
        [face] = result["faces"]
        outputs[name] = {
            "age_probs": [float(p) for p in age_probs[i]],
            "gender_probs": [float(p) for p in gender_probs[i]],
            "input_mean": float(inputs[i].mean()),
            "input_std": float(inputs[i].std()),
            **{key: face[key] for key in ("gender", "age_bin", "age_range", "age")},
        }
    return outputs


@pytest.mark.skipif(not (DEFAULT_RELEASE_DIR / "model.safetensors").is_file(), reason="no shipped model")
def test_shipped_release_outputs_match_the_stored_values():
    outputs = compute()
    if os.environ.get("AGECURRICULUM_WRITE_RELEASE_OUTPUTS"):
        STORED.parent.mkdir(exist_ok=True)
        STORED.write_text(json.dumps(outputs, indent=1) + "\n", encoding="utf-8")
    stored = json.loads(STORED.read_text(encoding="utf-8"))
    assert list(outputs) == list(stored)
    for name, want in stored.items():
        got = outputs[name]
        for key in ("age_probs", "gender_probs"):
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=TOLERANCE, err_msg=f"{name}: {key}")
        for key in ("input_mean", "input_std"):
            assert got[key] == pytest.approx(want[key], abs=TOLERANCE), f"{name}: {key}"
        for key in ("gender", "age_bin", "age_range"):
            assert got[key] == want[key], f"{name}: {key}"
        assert got["age"] == pytest.approx(want["age"], abs=0.011), f"{name}: age"
