"""glibc allocator policy for the training forward/backward on CPU (issue #17: peak memory).

PyTorch's CPU tensors come from glibc ``malloc``. glibc serves a request above its mmap threshold with a fresh
``mmap`` (given back to the OS on ``free``) and anything smaller from its heap, and it raises that threshold
dynamically, up to 32 MB, each time an mmapped block is freed. After the first large tensors of a run, the
per-layer activations and gradients of a training step (a few MB each) therefore land on the heap, and what they
leave behind stays resident: measured on one shared-prompt GRPO step at prompt 2k, G = 8 (SmolLM2-135M,
``benchmarks/train_step.py``), RSS peaks ~1.4 GB above the step's live tensors, and ~0.9 GB stays resident after it.

During the training forward/backward we fix the threshold at ``cpu_malloc_mmap_threshold_mb`` (default 4 MB): those
tensors are mmapped and their pages go back to the OS when freed, at the cost of page faults (about +20 % time for
that step on the 2-core CPU). Rollout generation goes back to a 32 MB threshold first: transformers' KV cache grows
by concatenation at every decode step, and mmapping those copies would fault hundreds of MB per token. On anything
but glibc/Linux, or with the key at 0, nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3                   # mallopt(3) parameter number (glibc malloc.h)
GENERATION_THRESHOLD = 32 * 2**20       # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where the dynamic one ends

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.gnu_get_libc_version     # glibc only
            lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


class MallocPolicy:
    """Switches glibc's mmap threshold between training (``train_mb``) and generation; a no-op when ``train_mb``
    is 0, the device is not the CPU or the C library is not glibc."""

    def __init__(self, train_mb: int, device_type: str) -> None:
        if train_mb < 0:
            raise ValueError(f"cpu_malloc_mmap_threshold_mb: {train_mb} (must be >= 0; 0 = leave malloc alone)")
        self.libc = _glibc() if (train_mb and device_type == "cpu") else None
        self.train_bytes = train_mb * 2**20
        self.state: str | None = None

    @property
    def active(self) -> bool:
        return self.libc is not None

    def _set(self, state: str, nbytes: int) -> None:
        if self.libc is not None and self.state != state:
            self.libc.mallopt(M_MMAP_THRESHOLD, nbytes)
            self.state = state

    def training(self) -> None:
        self._set("training", self.train_bytes)

    def generation(self) -> None:
        self._set("generation", GENERATION_THRESHOLD)


def policy_callback(policy: MallocPolicy, *, sft: bool):
    """A TrainerCallback that puts the generation policy back at the end of every optimizer step (validation
    generates there) and, for SFT (whose steps never generate), the training policy at the start of every step.
    GRPO switches inside the step (SRLGRPOTrainer: generation first, then the loss)."""
    from transformers import TrainerCallback

    class MallocPolicyCallback(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if sft:
                policy.training()

        def on_step_end(self, args, state, control, **kw):
            policy.generation()

    return MallocPolicyCallback()
