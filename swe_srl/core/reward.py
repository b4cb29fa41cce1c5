"""SRL step reward: similarity of the model's action to the expert's, −1 on a format violation.

    r = similarity(canonical(predicted action), canonical(expert action))   if the completion follows the format
    r = format_penalty (−1.0)                                              otherwise

Similarity backends (``similarity(pred, expert, backend=...)``):
  difflib    exactly ``difflib.SequenceMatcher(None, pred, expert, autojunk=False).ratio()`` — the reference
  cydifflib  the same computation in Cython; equal to difflib bit for bit (tested)
  fast       our compiled exact Ratcliff/Obershelp (``swe_srl.core._ratcliff``); equal to difflib bit for bit
             (tested); used only when the extension is built
  difflib-fast  the PyPI package ``difflib-fast`` (Rust suffix automaton; optional extra ``swe-srl[difflib-fast]``);
             equal to difflib bit for bit on everything we test (tested when installed); strings it cannot take
             (lone surrogates) go to our compiled backend
  exact      the fastest available exact backend, all identical: per pair, ``difflib-fast`` for long pairs
             (>= DIFFLIB_FAST_MIN_CHARS chars together, where it is several times faster) when it is installed and
             passed its self-check, else fast > cydifflib > difflib
  indel      rapidfuzz normalized Indel similarity, 2·LCS/(|a|+|b|) — NOT identical to difflib: since every
             Ratcliff/Obershelp matching is a common subsequence, indel >= difflib; an ablation option only

Argument order is fixed (prediction first, expert second): SequenceMatcher.ratio() is not symmetric in general.
"""

from __future__ import annotations

import difflib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from .format import parse_completion
from .toolcall import canonicalize_action, looks_like_tool_call

FORMAT_PENALTY = -1.0


def _difflib(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _cydifflib(a: str, b: str) -> float:
    import cydifflib

    return cydifflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


try:  # the compiled extension is optional (built by setup.py when a C compiler is present)
    from ._ratcliff import ratio as _ratcliff_ratio  # type: ignore[import-not-found]
except ImportError:
    _ratcliff_ratio = None


def _fast(a: str, b: str) -> float:
    if _ratcliff_ratio is None:
        raise ImportError("similarity backend 'fast' needs the compiled extension swe_srl.core._ratcliff, which is "
                          "not built (reinstall with a C compiler present); use backend='exact' to fall back")
    return _ratcliff_ratio(a, b)


try:  # optional third-party exact backend (docs/paper-fidelity.md, "Reward backend: difflib-fast")
    import difflib_fast as _difflib_fast_mod  # type: ignore[import-not-found]
except ImportError:
    _difflib_fast_mod = None

DIFFLIB_FAST_MIN_CHARS = 1500
"""``exact`` hands a pair to difflib-fast from this many characters (pred + expert) on: below it our C backend is as
fast or faster (per-call overhead dominates); above it the suffix automaton wins (benchmarks/reward_throughput.py)."""

#: tricky pairs every use of difflib-fast under ``exact`` is conditioned on (checked once per process against our
#: compiled backend / difflib): ties, argument-order asymmetry, popular characters, non-BMP, NUL, long repeats
SELF_CHECK_PAIRS: tuple[tuple[str, str], ...] = (
    ("", ""), ("", "a"), ("a", ""), (" abcd", "abcd abcd"), ("abxcd", "abcd"), ("abab", "baab"), ("baab", "abab"),
    ("\x00a\x00", "a\x00\x00b"), ("é中\U0001F600x", "x\U0001F600中é"), ("\U0010FFFF" * 3, "\U0010FFFF"),
    ("ab" * 1500, "ba" * 1500), ("a" * 3000, "a" * 2999), ("x = 1\n" + " " * 10 + "a" * 150 + " " * 100 + "b",
                                                          " " * 5 + "a" * 140 + "c" + " " * 120 + "b" + "x = 1\n"),
    ("def f(a, b):\n    return a + b\n" * 60, "def f(x, y):\n    return x - y\n" * 61),
)
_difflib_fast_ok: bool | None = None


def _ours(a: str, b: str) -> float:
    """Our best exact backend without difflib-fast (compiled C, else cydifflib, else difflib)."""
    if _ratcliff_ratio is not None:
        return _ratcliff_ratio(a, b)
    return _exact_python()(a, b)


def _difflib_fast(a: str, b: str) -> float:
    if _difflib_fast_mod is None:
        raise ImportError("similarity backend 'difflib-fast' needs the package difflib-fast "
                          "(pip install 'swe-srl[difflib-fast]'); use backend='exact' for our own backend")
    try:
        return _difflib_fast_mod.ratio(a, b)
    except UnicodeEncodeError:      # lone surrogates: the Rust side takes valid UTF-8 only
        return _ours(a, b)


def difflib_fast_available() -> bool:
    """True when difflib-fast is installed AND gives difflib's exact value on SELF_CHECK_PAIRS (checked once)."""
    global _difflib_fast_ok
    if _difflib_fast_mod is None:
        return False
    if _difflib_fast_ok is None:
        try:
            _difflib_fast_ok = all(_difflib_fast_mod.ratio(a, b) == _reference_exact(a, b)
                                   for a, b in SELF_CHECK_PAIRS)
        except Exception:
            _difflib_fast_ok = False
        if not _difflib_fast_ok:
            import warnings

            warnings.warn("difflib-fast is installed but failed the exactness self-check; the 'exact' similarity "
                          "backend does not use it", RuntimeWarning, stacklevel=2)
    return _difflib_fast_ok


def _reference_exact(a: str, b: str) -> float:
    return _ratcliff_ratio(a, b) if _ratcliff_ratio is not None else _difflib(a, b)


def _hybrid(a: str, b: str) -> float:
    """``exact`` with difflib-fast installed: our C backend for short pairs, difflib-fast for long ones (identical
    values; only the speed differs)."""
    if len(a) + len(b) >= DIFFLIB_FAST_MIN_CHARS:
        try:
            return _difflib_fast_mod.ratio(a, b)
        except UnicodeEncodeError:
            pass
    return _ours(a, b)


def _indel(a: str, b: str) -> float:
    from rapidfuzz.distance import Indel

    return Indel.normalized_similarity(a, b)


def fast_available() -> bool:
    return _ratcliff_ratio is not None


def _exact() -> Callable[[str, str], float]:
    if difflib_fast_available():
        return _hybrid if _ratcliff_ratio is not None else _difflib_fast
    if _ratcliff_ratio is not None:
        return _ratcliff_ratio
    return _exact_python()


def _exact_python() -> Callable[[str, str], float]:
    try:
        import cydifflib  # noqa: F401

        return _cydifflib
    except ImportError:
        return _difflib


BACKENDS: dict[str, Callable[[str, str], float]] = {
    "difflib": _difflib, "cydifflib": _cydifflib, "fast": _fast, "difflib-fast": _difflib_fast, "indel": _indel,
}
EXACT_BACKENDS = ("difflib", "cydifflib", "fast", "difflib-fast", "exact")


def get_similarity(backend: str = "difflib") -> Callable[[str, str], float]:
    """The similarity function of a backend; for ``fast``/``exact`` with the extension built, the C function
    itself (no Python wrapper per call)."""
    if backend == "exact":
        return _exact()
    if backend == "fast" and _ratcliff_ratio is not None:
        return _ratcliff_ratio
    try:
        return BACKENDS[backend]
    except KeyError:
        raise ValueError(f"backend: unknown similarity backend {backend!r} "
                         f"(choose from {sorted([*BACKENDS, 'exact'])})") from None


def similarity(pred: str, expert: str, backend: str = "difflib") -> float:
    """Ratcliff/Obershelp ratio 2M/T of (pred, expert) — in this argument order."""
    return get_similarity(backend)(pred, expert)


@dataclass(frozen=True)
class RewardResult:
    reward: float
    similarity: float | None     # None on a format violation
    violation: str | None
    action: str | None           # the canonical predicted action


def score_completion(completion: str, expert_action: str, *, format_penalty: float = FORMAT_PENALTY,
                     expect_tool_call: bool | None = None, think_prefilled: bool = False,
                     backend: str = "exact") -> RewardResult:
    """Parse, canonicalize and score one completion against the expert action, with details for logging.

    expect_tool_call=None decides from the expert action: a target that is a tool call requires the
    prediction to be exactly one tool call."""
    parsed = _parse(completion, expert_action, format_penalty, expect_tool_call, think_prefilled)
    if isinstance(parsed, RewardResult):
        return parsed
    sim = similarity(parsed[0], parsed[1], backend)
    return RewardResult(sim, sim, None, parsed[0])


def _parse(completion: str, expert_action: str, format_penalty: float, expect_tool_call: bool | None,
           think_prefilled: bool) -> RewardResult | tuple[str, str]:
    """The format check: a violation's RewardResult, or (canonical predicted action, canonical expert action)."""
    if not expert_action.strip():
        raise ValueError("expert_action: empty expert action")
    if expect_tool_call is None:
        expect_tool_call = looks_like_tool_call(expert_action)
    parsed = parse_completion(completion, expect_tool_call=expect_tool_call, think_prefilled=think_prefilled)
    if not parsed.ok:
        return RewardResult(format_penalty, None, parsed.violation, None)
    assert parsed.action is not None
    return parsed.action, canonicalize_action(expert_action)


def srl_reward(completion: str, expert_action: str, **options) -> float:
    """The SRL step reward of one completion (see score_completion for the options)."""
    return score_completion(completion, expert_action, **options).reward


# -- batch ------------------------------------------------------------------------------------------------
PARALLEL_MIN_CHARS = 200_000
"""Below this many characters of (completion + target) in a batch, scoring stays in-process (pure-Python backends)."""
PARALLEL_MIN_CHARS_COMPILED = 20_000_000
"""The same threshold when the compiled backend scores: it is ~60x faster, so a process pool only pays off on huge
batches (measured in benchmarks/reward_throughput.py: 2 processes were slower than 1 at 200k-2M chars)."""


def _score_chunk(args: tuple[list[str], list[str], dict]) -> list[RewardResult]:
    completions, targets, options = args
    return [score_completion(c, t, **options) for c, t in zip(completions, targets)]


def score_batch(completions: Sequence[str], targets: Sequence[str], *, processes: int | None = None,
                **options) -> list[RewardResult]:
    """Score many pairs, in order. Uses a process pool when the batch is long (many or long actions);
    ``processes=1`` forces in-process scoring, ``None`` = all cores when worth it."""
    if len(completions) != len(targets):
        raise ValueError(f"targets: {len(targets)} targets for {len(completions)} completions")
    n = len(completions)
    procs = processes if processes is not None else (os.cpu_count() or 1)
    backend = options.get("backend", "exact")
    if backend == "difflib-fast" or (backend == "exact" and difflib_fast_available()):
        return _score_batch_threads(completions, targets, procs, options)
    total = sum(map(len, completions)) + sum(map(len, targets))
    compiled = backend in ("fast", "exact") and fast_available()
    threshold = PARALLEL_MIN_CHARS_COMPILED if compiled else PARALLEL_MIN_CHARS
    if procs <= 1 or n < 2 * procs or total < threshold:
        return _score_chunk((list(completions), list(targets), options))
    # balance chunks by characters, keep order
    chunks: list[tuple[list[str], list[str], dict]] = []
    per = total / (procs * 4)
    cur_c: list[str] = []
    cur_t: list[str] = []
    acc = 0
    for c, t in zip(completions, targets):
        cur_c.append(c)
        cur_t.append(t)
        acc += len(c) + len(t)
        if acc >= per:
            chunks.append((cur_c, cur_t, options))
            cur_c, cur_t, acc = [], [], 0
    if cur_c:
        chunks.append((cur_c, cur_t, options))
    with ProcessPoolExecutor(max_workers=procs) as pool:
        out: list[RewardResult] = []
        for part in pool.map(_score_chunk, chunks):
            out.extend(part)
    return out


def _score_batch_threads(completions: Sequence[str], targets: Sequence[str], threads: int,
                         options: dict) -> list[RewardResult]:
    """score_batch through difflib-fast's batch API: parse in-process, then every similarity of the batch in one
    call that releases the GIL and runs ``threads`` workers (no process pool, nothing pickled). Under ``exact`` the
    short pairs stay on our C backend (faster there) and strings difflib-fast cannot take fall back to it."""
    if _difflib_fast_mod is None:
        _difflib_fast("", "")           # raises the ImportError that names the extra
    backend = options.get("backend", "exact")
    fmt = {k: options[k] for k in ("format_penalty", "expect_tool_call", "think_prefilled") if k in options}
    parsed = [_parse(c, t, fmt.get("format_penalty", FORMAT_PENALTY), fmt.get("expect_tool_call"),
                     fmt.get("think_prefilled", False)) for c, t in zip(completions, targets)]
    sims: dict[int, float] = {}
    batch: list[int] = []
    for i, p in enumerate(parsed):
        if isinstance(p, RewardResult):
            continue
        if (backend == "exact" and _ratcliff_ratio is not None and len(p[0]) + len(p[1]) < DIFFLIB_FAST_MIN_CHARS):
            sims[i] = _ratcliff_ratio(p[0], p[1])
        else:
            batch.append(i)
    if batch:
        try:
            values = _difflib_fast_mod.ratio([parsed[i] for i in batch], threads=max(1, threads))
        except UnicodeEncodeError:      # some string of the batch holds a lone surrogate: pair by pair
            values = [_difflib_fast(*parsed[i]) for i in batch]
        sims.update(zip(batch, values))
    out: list[RewardResult] = []
    for i, p in enumerate(parsed):
        if isinstance(p, RewardResult):
            out.append(p)
        else:
            out.append(RewardResult(sims[i], sims[i], None, p[0]))
    return out


def srl_rewards(completions: Sequence[str], targets: Sequence[str], **options) -> list[float]:
    """Batch version of srl_reward: rewards in input order."""
    return [r.reward for r in score_batch(completions, targets, **options)]
