#!/usr/bin/env bash
# GPU smoke test for a fresh CUDA machine, about 10 minutes (issue #15 item 5):
#   bash scripts/gpu_smoke.sh                 # install from constraints/cuda.txt, then run everything below
#   bash scripts/gpu_smoke.sh --no-install    # the environment is ready (e.g. a machine without network)
#   bash scripts/gpu_smoke.sh --cpu-dry       # the same pipeline on CPU with a tiny model (checks the script)
#
# What it runs (a Qwen2.5-0.5B-sized model with RANDOM weights: only a config and a tokenizer are needed, so it
# works without network; the tokenizer is $SWE_SRL_TOKENIZER, else the cached SmolLM2 one, else a byte-level
# tokenizer with a ChatML template built here):
#   1. 3 SRL steps with transformers rollouts: plain TRL GRPOTrainer vs ours (SRLGRPOTrainer, dynamic sampling on),
#      samples/s of each (benchmarks/train_throughput.py);
#   2. the same with `rollout: vllm-colocate` when vllm imports (skipped, and said so, when it does not);
#   3. the training forward/backward of one SRL step, ours (shared-prompt log-probs) vs plain TRL, prompt 2k / 4k,
#      G = 8, completion 128, step time and peak GPU memory (benchmarks/train_step.py --device cuda).
# Results: benchmarks/results/{train_throughput_gpu_smoke*,train_step_gpu_smoke}.json (device and versions inside)
# and a copy under $OUT (default: runs/gpu_smoke). Set SWE_SRL_GIT_COMMIT when the tree has no .git.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-runs/gpu_smoke}"
install=1; dry=0
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;;
    --cpu-dry) dry=1; install=0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1m[gpu-smoke]\033[0m %s\n' "$*"; }
t_start=$(date +%s)
mkdir -p "$OUT"

if [ "$dry" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_smoke.sh: no CUDA GPU (nvidia-smi -L fails); use --cpu-dry to check the script on CPU" >&2; exit 2
  fi
  nvidia-smi -L
fi

if [ "$install" = 1 ]; then
  log "installing from constraints/cuda.txt (the tested CUDA set)"
  "$PY" -m pip install -q -c constraints/cuda.txt torch
  "$PY" -m pip install -q -c constraints/cuda.txt -e ".[dev]"
  "$PY" -m pip check || log "pip check is not clean (see above)"
fi

"$PY" - <<'EOF'
import importlib.metadata as md
for p in ("torch", "transformers", "trl", "accelerate", "peft", "vllm"):
    try:
        print(f"  {p} {md.version(p)}")
    except md.PackageNotFoundError:
        print(f"  {p} (not installed)")
EOF

# ---- the model directory: config.json (random init) + tokenizer, no weights ----
MODEL_DIR="$OUT/model"
if [ "$dry" = 1 ]; then SHAPE=tiny; else SHAPE=qwen05b; fi
SHAPE="$SHAPE" MODEL_DIR="$MODEL_DIR" "$PY" - <<'EOF'
import json, os, shutil
from pathlib import Path

out = Path(os.environ["MODEL_DIR"]); out.mkdir(parents=True, exist_ok=True)
shape = os.environ["SHAPE"]
src = os.environ.get("SWE_SRL_TOKENIZER") or ""
cache = Path(os.environ.get("SWE_SRL_CACHE", Path.home() / ".cache" / "swe-srl")) / "models" / "smollm2-135m"
if not src and (cache / "tokenizer.json").exists():
    src = str(cache)
if src:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(src)
    how = f"tokenizer of {src}"
else:   # offline and nothing cached: a byte-level tokenizer (256 bytes + ChatML specials), built here
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))   # GPT-2's byte -> char map
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra); extra += 1
    vocab = {ch: i for i, ch in enumerate(chars.values())}
    t = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    how = "byte-level tokenizer built by gpu_smoke.sh (no tokenizer available offline)"
tok.save_pretrained(out)
vocab = -(-len(tok) // 64) * 64
if shape == "qwen05b":   # Qwen2.5-0.5B's shape; the vocabulary is the tokenizer's (151936 with Qwen's own)
    cfg = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=896, intermediate_size=4864,
               num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
               rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")
else:
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=128,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
               tie_word_embeddings=True, hidden_act="silu")
cfg.update(vocab_size=vocab, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
           bos_token_id=None, torch_dtype="float32")
(out / "config.json").write_text(json.dumps(cfg, indent=1))
print(f"[gpu-smoke] model dir {out}: {shape} config (vocab {vocab}), {how}")
EOF

if [ "$dry" = 1 ]; then
  TT=(--steps 1 --repeats 1 --batch-prompts 2 --g 2 --micro 4 --max-new 8)
  TS=(--device cpu --model tiny-random --configs 64x2 --completion 8 --warmup 1)
  BF=()
  TAG=cpu_dry
else
  TT=(--steps 3 --repeats 1 --batch-prompts 8 --g 8 --micro 16 --max-new 128 --prompt-tokens 1024 --reward mixed
      --warmup --ds-max-rounds 4)
  TS=(--device cuda --model qwen05b-random --configs 2048x8,4096x8 --completion 128 --warmup 1 --steps 2)
  BF=(--bf16)
  TAG=gpu_smoke
fi

# 1. transformers rollouts
log "1/3: 3 SRL steps, transformers rollouts: plain TRL vs ours (samples/s)"
"$PY" benchmarks/train_throughput.py --model "$MODEL_DIR" --random-init "${BF[@]}" --rollout transformers \
  --variants trl,ours_ds1 "${TT[@]}" --tag "${TAG}_transformers" --out-dir "$OUT" | tail -n 25

# 2. vLLM colocate rollouts (when vllm imports)
if "$PY" -c "import vllm" >/dev/null 2>&1 && [ "$dry" = 0 ]; then
  log "2/3: 3 SRL steps, rollout vllm-colocate: plain TRL vs ours (samples/s)"
  "$PY" benchmarks/train_throughput.py --model "$MODEL_DIR" --random-init "${BF[@]}" --rollout vllm-colocate \
    --variants trl,ours_ds1 "${TT[@]}" --tag "${TAG}_vllm_colocate" --out-dir "$OUT" | tail -n 25 \
    || log "2/3: the vllm-colocate run FAILED (see above); transformers results stand"
else
  log "2/3: skipped: vllm does not import here (or --cpu-dry); install the vllm extra to run it"
fi

# 3. training forward/backward: shared-prompt log-probs vs TRL's per-row path
log "3/3: one SRL step's forward/backward, ours vs plain TRL (benchmarks/train_step.py)"
"$PY" benchmarks/train_step.py "${TS[@]}" "${BF[@]}" --repeats 1 --tag "$TAG" --workdir "$OUT/train_step"
cp "benchmarks/results/train_step_${TAG}.json" "$OUT/" 2>/dev/null || true

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for f in sorted(out.glob("train_throughput_*.json")):
    s = json.loads(f.read_text())["summary"]
    line = ", ".join(f"{v}: {d['samples_per_s_median']:.2f} samples/s" for v, d in s.items())
    ratio = s.get("ours_ds1", {}).get("ratio_vs_trl")
    print(f"[gpu-smoke] {f.stem}: {line}" + (f" (ours/trl {ratio:.2f})" if ratio else ""))
for f in sorted(out.glob("train_step_*.json")):
    d = json.loads(f.read_text())
    for r in d["configs"]:
        print(f"[gpu-smoke] {f.stem} P={r['prompt_tokens']} G={r['G']}: fwd+bwd speedup {r.get('fwd_bwd_speedup')}, "
              f"peak GPU memory ratio {r.get('cuda_peak_ratio')}, peak RSS ratio {r.get('peak_rss_ratio')}")
EOF
log "done in $(( $(date +%s) - t_start )) s; results in $OUT and benchmarks/results/"
