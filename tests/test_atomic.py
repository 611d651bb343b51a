"""Atomic writes: nothing half-written on failure, and the user's umask on success."""

import os
import stat

import pytest

from cellclass.io.atomic import atomic_path


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_of_an_ordinary_write(tmp_path, umask, mask, mode):
    umask(mask)
    with atomic_path(tmp_path / "table.tsv") as tmp:
        tmp.write_text("a\n")
    with open(tmp_path / "plain.tsv", "w") as f:
        f.write("a\n")
    assert stat.S_IMODE((tmp_path / "table.tsv").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.tsv").stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]
