"""Models for phones: ONNX Runtime's mobile format (``.ort``) and a CoreML ``.mlpackage``.

:func:`convert_to_ort` turns a file of :func:`~agecurriculum.inference.export_onnx` (float32) or of
:func:`~agecurriculum.inference.quantize_onnx` (int8) into the ``.ort`` format that ONNX Runtime Mobile loads on
iOS and Android, with ONNX Runtime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``). The graph is
the same function: same input and outputs, same metadata (the release config), so ONNX Runtime on a computer loads
the ``.ort`` file too, and :class:`~agecurriculum.inference.OnnxBackend` runs it.

:func:`export_coreml` converts the release's network with ``coremltools`` (an optional dependency,
``pip install 'agecurriculum[coreml]'``) into an ML program for iOS 16 / macOS 13 and later. coremltools converts
on Linux but runs a model only on macOS: here the converted program's interface and ops are checked, not its
numbers.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from agecurriculum.fileio import atomic_write, ensure_writable_folder, error_about
from agecurriculum.inference.backends import ONNX_INPUT, ONNX_OUTPUTS, ONNX_RELEASE_KEY
from agecurriculum.inference.export import _with_softmax
from agecurriculum.release import load_release

__all__ = ["COREML_MAX_BATCH", "ORT_TARGET_PLATFORM", "convert_to_ort", "export_coreml", "model_bytes"]

# Phones run ARM CPUs: "arm" lets the converter keep int8 QDQ pairs that ARM kernels run natively, and it leaves out
# the x86-only NCHWc layout the converter would otherwise bake into the graph.
ORT_TARGET_PLATFORM = "arm"
COREML_MAX_BATCH = 64  # upper bound of the CoreML model's batch dimension (CoreML wants a bounded range)
COREML_DEPLOYMENT_TARGET = "iOS16"  # ML programs need iOS 15 or later; 16 is the target this export was checked with


def convert_to_ort(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Writes an exported ONNX model in ONNX Runtime's mobile format, atomically.

    The converter optimises the graph as ONNX Runtime would at load time (level "all", fixed: the optimised graph is
    stored, so a phone does no optimisation work) for an ARM CPU (:data:`ORT_TARGET_PLATFORM`).

    Args:
        onnx_path: a float32 file of :func:`~agecurriculum.inference.export_onnx` or an int8 file of
            :func:`~agecurriculum.inference.quantize_onnx`.
        out_path: the file to (over)write; it must end in ``.ort``, the suffix ONNX Runtime tells the format by.

    Returns:
        ``out_path`` as a Path.

    Raises:
        FileNotFoundError: ``onnx_path`` is missing.
        ValueError: ``out_path`` does not end in ``.ort``, or ``onnx_path`` is not a model exported by this library.
    """
    import onnxruntime as ort  # here: it takes a while to import
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if out_path.suffix.lower() != ".ort":
        raise ValueError(
            f"{out_path}: an ONNX Runtime mobile model must end in .ort (ONNX Runtime tells the format by the suffix)"
        )
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    try:
        metadata = (
            ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        )
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise ValueError(f"{onnx_path}: not a readable ONNX model: {e}") from e
    if ONNX_RELEASE_KEY not in metadata:
        raise ValueError(f"{onnx_path}: no {ONNX_RELEASE_KEY} metadata; export it with `agecurriculum export`")
    with tempfile.TemporaryDirectory(prefix="agecurriculum-ort-") as tmp:
        # The converter names its output after its input and writes beside it a list of the operators used (for a
        # reduced ONNX Runtime build): a private copy keeps both away from the user's folder.
        source = Path(tmp) / "model.onnx"
        shutil.copyfile(onnx_path, source)
        with _quiet("ort_format_model.utils"):  # it prints and logs every step
            convert_onnx_models_to_ort(
                source,
                output_dir=Path(tmp) / "ort",
                optimization_styles=[OptimizationStyle.Fixed],
                target_platform=ORT_TARGET_PLATFORM,
            )
        atomic_write(out_path, (Path(tmp) / "ort" / "model.ort").read_bytes())
    return out_path


def export_coreml(release_dir: str | Path, out_path: str | Path) -> Path:
    """Writes the release's network as a CoreML ML program (``.mlpackage``, a folder), in float32.

    Input ``images`` ``(N, 3, S, S)`` float32 (N from 1 to :data:`COREML_MAX_BATCH`), outputs ``age_probs``
    ``(N, K)`` and ``gender_probs`` ``(N, 2)``: the function of :func:`~agecurriculum.inference.export_onnx`. The
    release config is stored as the model's user-defined metadata entry ``agecurriculum.release``. The package is
    written beside ``out_path`` and renamed into place, so a failed export leaves an existing package as it was.

    Args:
        release_dir: a folder written by :func:`~agecurriculum.release.save_release`.
        out_path: the package to (over)write; it must end in ``.mlpackage``.

    Returns:
        ``out_path`` as a Path.

    Raises:
        ImportError: coremltools is not installed.
        FileNotFoundError, ValueError: the release is missing or broken, or ``out_path`` does not end in
            ``.mlpackage``.
        OSError: the package cannot be written (a file in the way, a full or read-only disk), naming ``out_path``
            (or the temporary folder where coremltools writes first), never a temporary file.
        RuntimeError: coremltools failed to convert the network (the message names both versions).
    """
    out_path = Path(out_path)
    if out_path.suffix != ".mlpackage":
        raise ValueError(f"{out_path}: a CoreML ML program is a folder whose name ends in .mlpackage")
    with _quiet("coremltools"):  # on Linux its import logs that the (macOS-only) prediction library is missing
        try:
            import coremltools as ct
        except ImportError as e:
            raise ImportError(f"CoreML export needs coremltools ({e}): pip install 'agecurriculum[coreml]'") from e
    model, info = load_release(release_dir)
    _check_package_path(out_path)  # a file in the way or a read-only disk fails now, not after the conversion
    example = torch.zeros(2, 3, info.image_size, info.image_size)
    try:
        program = torch.export.export(
            _with_softmax(model).eval(),
            (example,),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=COREML_MAX_BATCH)},),
        ).run_decompositions({})
        _float_clip_bounds(program)
        with _quiet("coremltools"):  # progress bars and its "torch version not tested" warning
            mlmodel = ct.convert(
                program,
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT32,
                minimum_deployment_target=getattr(ct.target, COREML_DEPLOYMENT_TARGET),
                inputs=[
                    ct.TensorType(
                        name=ONNX_INPUT,
                        shape=(ct.RangeDim(1, COREML_MAX_BATCH, default=1), 3, info.image_size, info.image_size),
                    )
                ],
                outputs=[ct.TensorType(name=name) for name in ONNX_OUTPUTS],
            )
    except OSError as e:  # it writes the package to the temporary folder first: e.g. that disk is full
        raise _user_error(e, Path(tempfile.gettempdir())) from e
    except Exception as e:  # coremltools raises plain ValueError/TypeError/... from deep inside its frontend
        raise RuntimeError(
            f"coremltools {ct.__version__} could not convert the network of {release_dir} "
            f"(torch {torch.__version__}): {type(e).__name__}: {str(e).strip().splitlines()[0]}"
        ) from e
    mlmodel.short_description = (
        f"agecurriculum age-group and gender classifier: {len(info.bins)} age bins "
        f"{info.bins.labels()}, gender 0 male 1 female"
    )
    mlmodel.user_defined_metadata[ONNX_RELEASE_KEY] = json.dumps(info.config, allow_nan=False)
    _replace_folder(out_path, mlmodel.save)
    return out_path


def model_bytes(path: str | Path) -> int:
    """Size of an exported model: a file's bytes, or the bytes of every file in a folder (a ``.mlpackage``)."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _float_clip_bounds(program: torch.export.ExportedProgram) -> None:
    # torch.export writes F.relu6 as hardtanh(x, 0, 6) with int bounds, and coremltools 9 passes them on as int32
    # clip bounds, which its clip op refuses beside a float32 tensor ("alpha has dtype int32 whereas x has dtype
    # fp32"). The same numbers as floats are the same function.
    for node in program.graph.nodes:
        if node.target == torch.ops.aten.hardtanh.default:
            node.args = (node.args[0], *(float(bound) for bound in node.args[1:]))
    program.graph_module.recompile()


def _replace_folder(path: Path, write) -> None:
    """Has ``write(folder)`` fill a new folder beside ``path``, then renames it to ``path`` (an old one is moved
    aside first and removed last, and put back if the rename fails).

    Raises:
        OSError: naming ``path``, never the temporary folder, with the reason as the other formats give it
            (``afile is a file, not a folder``, ``No space left on device``); ``shutil.copytree``'s list of
            failed copies (coremltools saves with it) becomes the first failure's reason.
    """
    try:
        _replace_folder_at(path, write)
    except OSError as err:
        if err.filename == str(path) and err.filename2 is None:
            raise
        raise _user_error(err, path) from err


def _user_error(err: OSError, path: Path) -> OSError:
    """``err`` as an OSError about ``path``: ``"PATH: reason"`` for :func:`~agecurriculum.errors.describe_error`."""
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) and err.args[0]:
        # [(source, destination, "[Errno 28] No space left on device: 'destination'"), ...]
        why = str(err.args[0][0][-1])
        found = re.match(r"\[Errno (\d+)\] ([^:]+)", why)
        if found:
            return OSError(int(found[1]), found[2], str(path))
        return OSError(errno.EIO, f"could not copy {len(err.args[0])} file(s) of the package", str(path))
    return error_about(err, path)


def _check_package_path(path: Path) -> None:
    """Creates ``path``'s folder; raises the OSError :func:`_replace_folder` would when it cannot write there."""
    try:
        ensure_writable_folder(path.parent)  # "afile is a file, not a folder" where a file stands in its way
    except OSError as err:
        raise _user_error(err, path) from err
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder (a .mlpackage is a folder)", str(path))


def _replace_folder_at(path: Path, write) -> None:
    _check_package_path(path)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    aside = work.with_suffix(".old")
    try:
        write(str(work / path.name))
        if path.exists():
            os.replace(path, aside)
        try:
            os.replace(work / path.name, path)
        except OSError:
            if aside.exists():
                os.replace(aside, path)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Swallows what a converter prints to stdout and stderr, its loggers' messages below ERROR and its
    deprecation warnings."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            # coremltools warns about its own deprecated registry hundreds of times per conversion.
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
