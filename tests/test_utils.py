import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from swin_edge.utils import (
    _HOST,
    atomic_path,
    remove_stale_temps,
    write_bytes_atomic,
    write_json_atomic,
)

KILLED_WRITER = """
import os, signal, sys
from swin_edge.utils import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_name_carries_the_writer_pid(tmp_path):
    with atomic_path(tmp_path / "out.bin") as tmp:
        assert tmp.name.startswith(f".out.bin.{os.getpid()}-{_HOST}.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"ok")
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temp_of_a_sigkilled_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.onnx"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
    assert proc.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.onnx.")
    write_bytes_atomic(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize(
    "name, age_s, removed",
    [
        (".out.bin.{dead}-{host}.abcd1234.tmp", 0, True),  # writer gone
        (".out.bin.{live}-{host}.abcd1234.tmp", 7200, False),  # writer alive (this process)
        (".out.bin.{live}-{host}.abcd1234.tmp", 2 * 86400, True),  # PID since reused
        (".out.bin.{dead}-{other}.abcd1234.tmp", 0, False),  # another host's, recent
        (".out.bin.{dead}-{other}.abcd1234.tmp", 7200, True),  # another host's, old
        (".out.bin.abcd1234.tmp", 0, False),  # old-style name, recent
        (".out.bin.abcd1234.tmp", 7200, True),  # old-style name, old
        (".other.bin.{dead}-{host}.abcd1234.tmp", 7200, False),  # another target's
        (".out.bin.data.abcd1234.tmp", 7200, False),  # not a temp name of ours
    ],
)
def test_stale_temps_are_recognised(tmp_path, name, age_s, removed):
    other = "fffffe" if _HOST == "ffffff" else "ffffff"
    path = tmp_path / name.format(dead=dead_pid(), live=os.getpid(), host=_HOST, other=other)
    path.write_bytes(b"partial")
    then = time.time() - age_s
    os.utime(path, (then, then))
    assert remove_stale_temps(tmp_path / "out.bin") == int(removed)
    assert path.exists() != removed


def test_json_is_written_strict(tmp_path):
    inf = float("inf")
    doc = {"sqnr": inf, "rows": [float("nan"), -inf, 1.5, np.float64(2.0)], "n": 3}
    path = write_json_atomic(tmp_path / "r.json", doc)

    def no_constant(name):
        raise AssertionError(f"{name} written")

    assert json.loads(path.read_text(), parse_constant=no_constant) == {
        "sqnr": None,
        "rows": [None, None, 1.5, 2.0],
        "n": 3,
    }
