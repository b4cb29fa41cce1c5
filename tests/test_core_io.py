"""core.io: the shared append log, resume guard and output lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from swe_srl.core.io import AppendLog, OutputLock, OutputLocked, ResumeGuard, ResumeMismatch, file_sha256, versions


def test_append_log_recovers_torn_tail(tmp_path):
    path = tmp_path / "log.jsonl"
    with AppendLog(path) as log:
        log.extend([{"i": 0}, {"i": 1}])
        log.append({"i": 2})
    with path.open("ab") as f:
        f.write(b'{"i": 3, "trunc')             # a crash mid-write
    log = AppendLog(path)
    assert [r["i"] for r in log] == [0, 1, 2] and log.recovered_bytes == len(b'{"i": 3, "trunc')
    log.append({"i": 3})
    log.close()
    assert [json.loads(x)["i"] for x in path.read_text().splitlines()] == [0, 1, 2, 3]


def test_append_log_drops_garbage_and_everything_after(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe not json\n{"a": 3}\n')
    log = AppendLog(path)
    assert log.records == [{"a": 1}]
    log.close()
    assert path.read_bytes() == b'{"a": 1}\n'


def test_append_log_keep_filter_rewrites_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 6)))
    log = AppendLog(path, keep=lambda r: r["step"] <= 3)
    assert [r["step"] for r in log] == [1, 2, 3]
    log.append({"step": 4})
    log.close()
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_resume_guard(tmp_path):
    g = ResumeGuard(tmp_path, ignore=["workers"])
    assert g.check({"a": 1, "workers": 1}) is False
    assert g.check({"a": 1, "workers": 4}) is True
    with pytest.raises(ResumeMismatch) as e:
        g.check({"a": 2, "workers": 1})
    msg = str(e.value)
    assert "a: 1 -> 2" in msg and "--out" in msg and "\n" not in msg


def test_file_sha256_and_versions(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert "swe-srl" in versions()


HOLD = ("import sys, time; from swe_srl.core.io import OutputLock; "
        "l = OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")


def test_output_lock_second_writer_fails_and_dead_holder_is_taken_over(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked) as e:
            OutputLock(tmp_path).acquire()
        assert f"pid {p.pid}" in str(e.value) and "\n" not in str(e.value)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    # the holder died without cleaning up: its lock file is still there, and is taken over
    assert (tmp_path / ".swe-srl.lock").exists()
    deadline = time.time() + 10
    while True:
        try:
            lock = OutputLock(tmp_path).acquire()
            break
        except OutputLocked:
            assert time.time() < deadline
            time.sleep(0.1)
    assert (tmp_path / ".swe-srl.lock").read_text().split()[0] == str(os.getpid())
    lock.release()
    with OutputLock(tmp_path):        # re-acquirable after release
        pass


def test_iter_jsonl_names_file_and_line(tmp_path):
    from swe_srl.core.io import iter_jsonl

    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n\n[2]\nnot json\n')
    it = iter_jsonl(p, label="--predictions", error=KeyError)
    assert next(it) == (1, {"a": 1}) and next(it) == (3, [2])
    with pytest.raises(KeyError) as e:
        next(it)
    assert f"--predictions {p}:4: not valid JSON" in str(e.value)
