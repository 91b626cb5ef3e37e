import os
import stat

import pytest

from agecurriculum.fileio import atomic_write


def test_writes_bytes_or_a_writer_and_replaces_the_old_content(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    atomic_write(path, b"old")
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["file.bin"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.bin"]


def test_new_files_get_the_usual_permissions_not_owner_only(tmp_path):
    # Released weights and exported models are read by other users (e.g. a shared install).
    path = tmp_path / "model.onnx"
    atomic_write(path, b"x", durable=False)
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")  # what open() gives under this process's umask
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
