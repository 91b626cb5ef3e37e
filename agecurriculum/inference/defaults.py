"""The predictor's defaults that the command line states in its help, in a module that loads neither torch nor dlib.

``agecurriculum predict --help`` and ``serve --help`` print these values; keeping them here (and the rest of
:mod:`agecurriculum.inference` imported on first use) lets the help answer at once. Why each face-finding value is
what it is: :mod:`agecurriculum.inference.finder`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BACKENDS", "DEFAULT_RELEASE_DIR", "PROCESSES_FROM", "RETRY_SCALE", "UPSAMPLE_MIN_SIDE", "VERIFY_BELOW"]

#: The folder of the trained default model, a release shipped with the package (model.safetensors + config.json) in
#: ``agecurriculum/weights/default`` of the installed package.
#:
#: :meta hide-value:
DEFAULT_RELEASE_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"

#: Where a :class:`~agecurriculum.inference.Predictor` runs its network: ``auto`` (ONNX Runtime on a CPU when it is
#: installed, else torch: :func:`~agecurriculum.inference.default_backend`), ``torch`` or ``onnx``.
BACKENDS = ("auto", "torch", "onnx")

#: HOG score below which a box is re-checked by the CNN, above the best false box seen (0.348; see
#: :mod:`~agecurriculum.inference.finder`).
VERIFY_BELOW = 0.5
#: Longer side (pixels) from which a photo is searched at upsample 1 from the start. Such photos are large enough to
#: hold faces of 40-80 px beside bigger ones (group photos); in smaller ones the faces worth predicting fill enough
#: of the photo for upsample 0 (80 px).
UPSAMPLE_MIN_SIDE = 800
#: A photo where upsample 0 finds nothing is searched again enlarged by this factor, about half of the 6/5 step
#: between the face sizes dlib's HOG pyramid looks at (sqrt(6/5) = 1.095), so the retry sees the sizes in between.
RETRY_SCALE = 1.1
#: Inputs from which ``agecurriculum predict`` finds faces in worker processes rather than threads (unless
#: ``--processes``/``--no-processes`` says): starting them takes about 0.2 s, and on a 2-core CPU the command ran 16
#: FairFace photos (224 px) as fast either way and 32 faster in processes (docs/benchmarks.md). See
#: :mod:`agecurriculum.inference.workers`.
PROCESSES_FROM = 32
