"""Shared fixtures. ``shared_data`` is the real datasets folder; tests that need it skip with the reason when absent."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# No time limit per generated example: on a busy 2-core CI machine a correct but slow example (a first call that
# loads a solver, a torch op waiting for a core) would fail Hypothesis's default 200 ms deadline.
settings.register_profile("agecurriculum", deadline=None)
settings.load_profile("agecurriculum")

# The real data lives beside the repository (../shared/data), read-only; AGECURRICULUM_DATA overrides the place.
SHARED_DATA = Path(os.environ.get("AGECURRICULUM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory):
    """The ONNX exports of the tests' releases (the default backend exports a release on first use) go to a folder
    of this test run, never into the user's cache; tests of the cache itself set AGECURRICULUM_CACHE again."""
    patch = pytest.MonkeyPatch()
    patch.setenv("AGECURRICULUM_CACHE", str(tmp_path_factory.mktemp("agecurriculum-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set AGECURRICULUM_DATA to their folder)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module's tests: with batches of 8 images of 32 px on a machine whose cores are
    busy, torch's threads wait on each other and one thread is many times faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
