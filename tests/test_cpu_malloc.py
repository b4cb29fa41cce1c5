"""glibc allocator policy (swe_srl/train/cpu_malloc.py): when it switches, and that it is a no-op off CPU/glibc."""

import pytest

from swe_srl.train import cpu_malloc
from swe_srl.train.cpu_malloc import GENERATION_THRESHOLD, M_MMAP_THRESHOLD, MallocPolicy, policy_callback


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(cpu_malloc, "_glibc", lambda: fake)
    return fake


def test_switches_once_per_phase(libc):
    p = MallocPolicy(4, "cpu")
    assert p.active
    p.training(); p.training(); p.generation(); p.generation(); p.training()
    assert libc.calls == [(M_MMAP_THRESHOLD, 4 * 2**20), (M_MMAP_THRESHOLD, GENERATION_THRESHOLD),
                          (M_MMAP_THRESHOLD, 4 * 2**20)]


def test_noop_when_off_or_not_cpu(libc):
    for p in (MallocPolicy(0, "cpu"), MallocPolicy(4, "cuda")):
        assert not p.active
        p.training(); p.generation()
    assert libc.calls == []
    with pytest.raises(ValueError, match="cpu_malloc_mmap_threshold_mb"):
        MallocPolicy(-1, "cpu")


def test_callback_phases(libc):
    p = MallocPolicy(4, "cpu")
    sft, grpo = policy_callback(p, sft=True), policy_callback(MallocPolicy(4, "cpu"), sft=False)
    sft.on_step_begin(None, None, None)
    sft.on_step_end(None, None, None)
    assert [v for _, v in libc.calls] == [4 * 2**20, GENERATION_THRESHOLD]
    grpo.on_step_begin(None, None, None)          # GRPO switches inside its step, not here
    grpo.on_step_end(None, None, None)
    assert [v for _, v in libc.calls][2:] == [GENERATION_THRESHOLD]


def test_real_glibc_accepts_the_calls():
    if cpu_malloc._glibc() is None:
        pytest.skip("not glibc")
    p = MallocPolicy(4, "cpu")
    p.training()
    assert p.libc.mallopt(M_MMAP_THRESHOLD, 4 * 2**20) == 1     # glibc returns 1 on success
    p.generation()
