"""TRL's chunked log-prob LM head on CPU: peak memory and time of one forward + backward per tile size (issue #17).

    python benchmarks/lm_head_tiles.py [--tokens 1024] [--repeats 2]

``trl.kernels.chunked_logprob.ChunkedLogProbFunction`` (what ``fused_lm_head=True`` runs) over N tokens of SmolLM2's
head shape (hidden 576, vocabulary 49,152, fp32), log-probs + entropy, backward into the hidden states and the
weight. Every (tile, repeat) runs in a fresh subprocess; its peak is the ``ru_maxrss`` growth over the inputs
(hidden, weight), i.e. what the head adds. Tiles: TRL's default (4,096 tokens x 32,768 columns), ours on CPU
(swe_srl/train/lm_head.py: 256 x 8,192) and neighbours. Interleaved: repeat r runs every tile once. Writes
benchmarks/results/lm_head_tiles.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

TILES = [(4096, 32768), (256, 32768), (512, 8192), (256, 8192), (128, 8192)]
HIDDEN, VOCAB = 576, 49152


def worker(tokens: int, tok_tile: int, voc_tile: int) -> dict:
    import torch
    import trl.kernels.chunked_logprob as kernel

    kernel.TOKEN_CHUNK_SIZE = tok_tile
    torch.manual_seed(0)
    hidden = torch.randn(tokens, HIDDEN, requires_grad=True)
    weight = (torch.randn(VOCAB, HIDDEN) * 0.02).requires_grad_()
    targets = torch.randint(0, VOCAB, (tokens,))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    lp, ent, *_ = kernel.ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, voc_tile, None, 1.0,
                                                      ("log_probs", "entropy"))
    (lp.sum() + 0.1 * ent.sum()).backward()
    return {"token_tile": tok_tile, "vocab_tile": voc_tile, "fwd_bwd_s": round(time.perf_counter() - t0, 3),
            "peak_over_inputs_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base, 1),
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.tokens, *args.worker)))
        return
    runs = []
    for rep in range(args.repeats):
        for tok, voc in TILES:
            out = subprocess.run([sys.executable, __file__, "--tokens", str(args.tokens), "--worker", str(tok),
                                  str(voc)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"repeat": rep})
            print(runs[-1], file=sys.stderr)
    rows = []
    for tok, voc in TILES:
        rs = [r for r in runs if (r["token_tile"], r["vocab_tile"]) == (tok, voc)]
        rows.append({"token_tile": tok, "vocab_tile": voc,
                     "fwd_bwd_s": round(statistics.median(r["fwd_bwd_s"] for r in rs), 3),
                     "peak_over_inputs_mb": round(statistics.median(r["peak_over_inputs_mb"] for r in rs), 1)})
    trl, ours = rows[0], next(r for r in rows if (r["token_tile"], r["vocab_tile"]) == (256, 8192))
    path = write_result("lm_head_tiles", {
        "what": "trl.kernels.chunked_logprob.ChunkedLogProbFunction forward + backward (log-probs + entropy) on CPU, "
                f"{args.tokens} tokens, hidden {HIDDEN}, vocabulary {VOCAB}, fp32; peak = ru_maxrss growth over the "
                "inputs in a fresh subprocess per (tile, repeat)",
        "tokens": args.tokens, "repeats": args.repeats,
        "trl_default": trl, "ours_cpu": ours,
        "memory_ratio": round(trl["peak_over_inputs_mb"] / ours["peak_over_inputs_mb"], 2),
        "time_ratio": round(trl["fwd_bwd_s"] / ours["fwd_bwd_s"], 2),
        "tiles": rows, "runs": runs})
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
