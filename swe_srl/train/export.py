"""Merged LoRA export: a LoRA run's adapter (``RUN/best``, ``RUN/final``, ``RUN/checkpoint-*``) folded into its
base model and written as a plain transformers model + tokenizer, which ``swe-srl eval`` (both backends) and vLLM load
like any other checkpoint (vLLM can serve LoRA adapters too, but only for the target modules it supports; a merged
model has no such limit and no adapter overhead at inference).

``merge_lora(ADAPTER_DIR, OUT)``: the base is the adapter's ``base_model_name_or_path`` (what the run loaded: the
model, or ``init_from``), unless ``base=`` names another; a model alias (``smollm2-135m``) is resolved as training
does. PEFT's own ``merge_and_unload`` does the arithmetic (W + scale * B @ A per target module). The output is
written to ``OUT.tmp`` and renamed into place, so an interrupted export never leaves a half model at ``OUT``, and an
existing ``OUT`` is refused unless ``overwrite=True``. ``OUT/export.json`` records where it came from (adapter
directory, its weights' sha256, the base, the LoRA shape, versions, the run's ``best.json`` when there is one).

``swe-srl export --merge-lora`` (swe_srl/commands/export.py) and the end of a LoRA training run
(``merge_lora_at_end``, swe_srl/train/runner.py) call it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..core.errors import SweSrlError
from ..core.io import file_sha256, versions, write_json_atomic
from ..models import resolve_model

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class ExportError(SweSrlError, ValueError):
    """An adapter directory or output path that cannot be exported (one line, names the file)."""


def _adapter_files(adapter_dir: Path) -> tuple[dict[str, Any], Path]:
    cfg_path = adapter_dir / ADAPTER_CONFIG
    if not adapter_dir.is_dir():
        raise ExportError(file=adapter_dir, reason="not a directory")
    if not cfg_path.exists():
        hint = (" (a full-weight model: it is already plain, nothing to merge)"
                if (adapter_dir / "config.json").exists() else "")
        raise ExportError(file=cfg_path, reason="not found: not a LoRA adapter directory" + hint)
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(file=cfg_path, line=e.lineno, reason=f"invalid JSON: {e.msg}") from None
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise ExportError(file=cfg_path, field="peft_type", reason=f"{cfg.get('peft_type')!r}: only LoRA merges")
    weights = next((adapter_dir / w for w in ADAPTER_WEIGHTS if (adapter_dir / w).exists()), None)
    if weights is None:
        raise ExportError(file=adapter_dir, field="adapter weights",
                          reason=f"none of {', '.join(ADAPTER_WEIGHTS)} found")
    return cfg, weights


def _run_manifest(adapter_dir: Path) -> dict[str, Any]:
    for d in (adapter_dir, adapter_dir.parent):
        m = d / "manifest.json"
        if m.exists():
            try:
                return json.loads(m.read_text())
            except json.JSONDecodeError:
                return {}
    return {}


def base_model_of(adapter_dir: str | Path, base: str | None = None) -> str:
    """What the adapter is merged into: ``base`` if given, else the adapter config's ``base_model_name_or_path``
    (falling back to the run manifest's ``model``), resolved like training resolves it."""
    adapter_dir = Path(adapter_dir)
    cfg, _ = _adapter_files(adapter_dir)
    manifest_cfg = _run_manifest(adapter_dir).get("config", {}) or {}
    if base is None and manifest_cfg.get("random_init"):
        raise ExportError(file=adapter_dir, field="base model",
                          reason="the run trained an adapter on a random-init base that was never saved; "
                                 "nothing to merge it into (pass --base only if you saved that model)")
    name = base or cfg.get("base_model_name_or_path") or manifest_cfg.get("init_from") or manifest_cfg.get("model")
    if not name:
        raise ExportError(file=adapter_dir / ADAPTER_CONFIG, field="base_model_name_or_path",
                          reason="empty and no run manifest names the model; pass --base")
    if Path(name).is_dir():
        return str(name)
    try:
        return resolve_model(name)
    except SweSrlError as e:
        raise ExportError(file=adapter_dir / ADAPTER_CONFIG, field="base model",
                          reason=f"{name!r} cannot be loaded ({e}); pass --base") from None


def merge_lora(adapter_dir: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "auto",
               overwrite: bool = False) -> Path:
    """Merge the LoRA adapter in ``adapter_dir`` into its base model; write model + tokenizer to ``out``."""
    from peft import PeftModel

    adapter_dir, out = Path(adapter_dir), Path(out)
    cfg, weights = _adapter_files(adapter_dir)
    if dtype not in DTYPES:
        raise ExportError(field="--dtype", reason=f"{dtype!r}: one of {', '.join(DTYPES)}")
    if out.resolve() == adapter_dir.resolve():
        raise ExportError(file=out, reason="the output directory is the adapter directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(file=out, reason="exists and is not empty (pass --overwrite to replace it)")
    base_path = base_model_of(adapter_dir, base)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto" if dtype == "auto" else getattr(torch, dtype))
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    merged = model.merge_and_unload()
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else Path(base_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    info: dict[str, Any] = {
        "kind": "swe-srl merged LoRA export",
        "adapter_dir": str(adapter_dir.resolve()), "adapter_weights_sha256": file_sha256(weights),
        "base_model": str(base_path), "tokenizer_from": str(tok_src),
        "lora": {k: cfg.get(k) for k in ("r", "lora_alpha", "target_modules", "use_rslora", "use_dora")},
        "dtype": str(merged.dtype).replace("torch.", ""), "seconds": round(time.perf_counter() - t0, 2),
        "versions": versions(("torch", "transformers", "peft")),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    best = adapter_dir / "best.json"
    if best.exists():
        try:
            info["best"] = json.loads(best.read_text())
        except json.JSONDecodeError:
            pass
    write_json_atomic(tmp / "export.json", info)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def merged_dir(output_dir: str | Path) -> tuple[Path, Path] | None:
    """(adapter directory, merged output directory) for the end of a LoRA run: ``best/`` when validation picked one,
    else ``final/``; merged into ``OUTPUT_DIR/merged`` (None when neither holds an adapter)."""
    out = Path(output_dir)
    for name in ("best", "final"):
        if (out / name / ADAPTER_CONFIG).exists():
            return out / name, out / "merged"
    return None
