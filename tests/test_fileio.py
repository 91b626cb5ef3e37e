import errno
import os
import stat

import pytest

from agecurriculum.errors import describe_error
from agecurriculum.fileio import atomic_write, error_about


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


def test_check_writable_file_fails_before_any_work_naming_the_file(tmp_path):
    from agecurriculum.fileio import check_writable_file

    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as caught:
        check_writable_file(tmp_path / "afile" / "m.onnx")
    assert caught.value.filename == str(tmp_path / "afile" / "m.onnx")
    assert caught.value.strerror == f"{tmp_path / 'afile'} is a file, not a folder"
    with pytest.raises(IsADirectoryError) as caught:
        check_writable_file(tmp_path)
    assert caught.value.filename == str(tmp_path)
    # A new folder is made, nothing is left in it, and a file already there is kept.
    assert check_writable_file(tmp_path / "new" / "m.onnx") == tmp_path / "new" / "m.onnx"
    assert list((tmp_path / "new").iterdir()) == []
    assert (tmp_path / "afile").read_bytes() == b"x"


def test_error_about_names_the_users_path_and_keeps_the_type_and_reason(tmp_path):
    # An error raised at a temporary file must reach the user naming the file they gave, with the reason intact.
    inner = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".tmp-file.bin.x1"))
    err = error_about(inner, tmp_path / "file.bin")
    assert type(err) is PermissionError and err.errno == errno.EACCES
    assert describe_error(err) == f"{tmp_path / 'file.bin'}: Permission denied"
