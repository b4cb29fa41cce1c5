import difflib
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from swe_srl.core import reward as R
from swe_srl.core import score_batch, score_completion, similarity, srl_reward, srl_rewards


def ref(a, b):
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


ALPHABET = st.text(alphabet=st.sampled_from(list("ab c\n(){}_=xyz01") + ["é", "\t"]), max_size=300)


def real_actions(shared_data: Path, limit: int = 400) -> list[str]:
    """Long-ish real strings: observations/actions from the real trajectory files."""
    out = []
    for p in sorted((shared_data / "swe_trajectories").rglob("*.traj"))[:6]:
        data = json.loads(p.read_text())
        for step in data.get("trajectory", [])[:40]:
            for key in ("action", "observation"):
                v = step.get(key)
                if isinstance(v, str) and v.strip():
                    out.append(v[:3000])
    return out[:limit]


@settings(max_examples=300, deadline=None)
@given(ALPHABET, ALPHABET)
def test_difflib_backend_is_exact_reference(a, b):
    assert similarity(a, b, "difflib") == ref(a, b)


@settings(max_examples=300, deadline=None)
@given(ALPHABET, ALPHABET)
def test_cydifflib_equals_difflib_bit_for_bit(a, b):
    assert similarity(a, b, "cydifflib") == ref(a, b)


@settings(max_examples=300, deadline=None)
@given(ALPHABET, ALPHABET)
def test_indel_is_upper_bound_of_difflib(a, b):
    assert similarity(a, b, "indel") >= ref(a, b) - 1e-12


def test_autojunk_matters_and_is_off():
    # >= 200 chars with a "popular" character: difflib's default autojunk changes the ratio
    a = "x = 1\n" + " " * 10 + "a" * 150 + " " * 100 + "b"
    b = " " * 5 + "a" * 140 + "c" + " " * 120 + "b" + "x = 1\n"
    assert len(a) > 200 and len(b) > 200
    with_junk = difflib.SequenceMatcher(None, a, b).ratio()
    assert with_junk != ref(a, b)
    assert similarity(a, b) == ref(a, b)


def test_exact_backends_on_real_long_strings(shared_data):
    strings = real_actions(shared_data)
    rng = random.Random(0)
    pairs = [(rng.choice(strings), rng.choice(strings)) for _ in range(150)]
    pairs += [(s, s[: len(s) // 2] + "# edit\n" + s[len(s) // 2:]) for s in strings[:60]]
    assert any(len(a) >= 2000 for a, _ in pairs)
    for a, b in pairs:
        r = ref(a, b)
        assert similarity(a, b, "cydifflib") == r
        assert similarity(a, b, "exact") == r
        assert similarity(a, b, "indel") >= r - 1e-12


def test_argument_order_is_pred_then_expert():
    a, b = "abxcd" * 3, "abcd" * 4
    assert similarity(a, b) == ref(a, b)


def test_unknown_backend_is_clear_error():
    with pytest.raises(ValueError, match="backend"):
        similarity("a", "b", "nope")


TOOL_TARGET = "<function=bash>\n<parameter=command>ls -la /testbed</parameter>\n</function>"


@pytest.mark.parametrize("completion,violation", [
    ("ls -la", "missing_think_open"),
    ("<think>thinking forever", "unclosed_think"),
    ("<think>a <think> b</think><function=bash><parameter=command>ls</parameter></function>", "nested_think"),
    ("<think>a</think><function=bash><parameter=command>ls</parameter></function></think>", "think_in_action"),
    ("<think>a</think><solution><function=bash><parameter=command>ls</parameter></function>", "unclosed_solution"),
    ("<think>a</think>hi <solution><function=bash><parameter=command>ls</parameter></function></solution>",
     "text_outside_solution"),
    ("<think>a</think>   \n ", "empty_action"),
    ("<think>a</think><solution>  </solution>", "empty_action"),
    ("<think>a</think>I would run ls", "no_tool_call"),
    ("<think>a</think><function=bash><parameter=command>ls</parameter>", "malformed_tool_call"),
    ("<think>a</think><function=bash>junk<parameter=command>ls</parameter></function>", "malformed_tool_call"),
    ("<think>a</think><function=bash><parameter=command>ls</parameter></function>"
     "<function=bash><parameter=command>pwd</parameter></function>", "multiple_tool_calls"),
    ("<think>a</think><function=bash><parameter=command>ls</parameter><parameter=command>x</parameter></function>",
     "duplicate_parameter"),
    ("<think>a</think>Let me list.\n<function=bash><parameter=command>ls</parameter></function>",
     "text_outside_tool_call"),
])
def test_every_violation_gives_minus_one(completion, violation):
    res = score_completion(completion, TOOL_TARGET)
    assert res.violation == violation
    assert res.reward == -1.0
    assert srl_reward(completion, TOOL_TARGET, format_penalty=-0.5) == -0.5


def test_math_mode_and_solution_wrapper():
    target = "2. **Coprime Pairs**: count pairs"
    assert srl_reward(f"<think>hmm</think>{target}", target) == 1.0
    assert srl_reward(f"<think>hmm</think>\n<solution>{target}</solution>\n", target) == 1.0
    assert srl_reward("<think></think>2. **Coprime**", target) == ref("2. **Coprime**", target)


def test_monologue_never_scored():
    target = "x = 5"
    a = srl_reward("<think>x = 5 x = 5 x = 5</think>y = 7", target)
    b = srl_reward("<think>completely unrelated</think>y = 7", target)
    assert a == b == ref("y = 7", target)


def test_empty_action_never_matches_even_empty_like_target():
    assert srl_reward("<think>a</think>", "x") == -1.0
    with pytest.raises(ValueError, match="expert_action"):
        srl_reward("<think>a</think>x", "  ")


def test_tool_call_canonicalized_on_both_sides():
    pred = "<think>t</think>\n<function = bash >\n<parameter = command>\n  ls -la /testbed \n</parameter>\n</function>\n"
    assert srl_reward(pred, "<function=bash><parameter=command>ls -la /testbed</parameter></function>") == 1.0
    # OpenHands execute_bash is the same tool as bash
    assert srl_reward(pred, '<function=execute_bash><parameter=command>ls -la /testbed</parameter></function>') == 1.0


def test_prefilled_think():
    assert srl_reward("plan</think>y", "y", think_prefilled=True) == 1.0


def test_batch_equals_scalar_and_keeps_order(shared_data):
    strings = real_actions(shared_data, 120)
    rng = random.Random(1)
    targets = [rng.choice(strings) for _ in range(60)]
    comps = []
    for t in targets:
        k = rng.random()
        if k < 0.2:
            comps.append("no format " + t[:50])
        else:
            comps.append(f"<think>m</think>{t[: rng.randint(1, max(1, len(t)))]}")
    scalar = [srl_reward(c, t, backend="difflib") for c, t in zip(comps, targets)]
    assert srl_rewards(comps, targets, processes=1, backend="difflib") == scalar
    # force the process pool even on a small batch
    old = R.PARALLEL_MIN_CHARS
    R.PARALLEL_MIN_CHARS = 0
    try:
        res = score_batch(comps, targets, processes=2, backend="difflib")
    finally:
        R.PARALLEL_MIN_CHARS = old
    assert [r.reward for r in res] == scalar


def test_batch_length_mismatch():
    with pytest.raises(ValueError, match="targets"):
        srl_rewards(["a"], [])


# -- difflib-fast (optional third-party exact backend, issue #17.5) ---------------------------------------------
try:
    import difflib_fast
except ImportError:  # pragma: no cover - depends on the install
    difflib_fast = None

needs_df = pytest.mark.skipif(difflib_fast is None, reason="difflib-fast not installed (pip install 'swe-srl[difflib-fast]')")
TINY = st.text(alphabet="ab", max_size=40)
SMALL = st.text(alphabet="ab \n", max_size=300)
MIXED = st.text(alphabet=st.sampled_from(["a", "b", " ", "\x00", "é", "ÿ", "中", "\uffff", "\U0001F600", "\U00010348",
                                          "\U0010FFFF"]), max_size=80)


def holdout_perturbations(rnd: random.Random, base: str) -> list[tuple[str, str]]:
    """The held-out-style perturbations of issue #17.5: unicode, NUL and 3,000-char repeats around a real string."""
    uni = "".join(rnd.choice(["é", "中", "\U0001F600", "ß", "\u200b", "\U0010FFFF", c]) for c in base[:400])
    nul = base[:300].replace(" ", "\x00", 7) + "\x00" * 5
    rep = (base[:30] or "ab") * (3000 // max(1, len(base[:30]) or 2) + 1)
    return [(uni, base[:400]), (base[:400], uni), (nul, base[:300]), ("\x00" * 50, "\x00" * 49 + "a"),
            (rep[:3000], rep[1:3001]), ("a" * 3000, "a" * 2990 + "b" * 10), ((" " * 3 + "x") * 750, " " * 3000),
            (rep[:3000], base[:2000])]


@needs_df
@settings(max_examples=300, deadline=None)
@given(TINY, TINY)
def test_difflib_fast_tiny_alphabet_ties(a, b):
    assert similarity(a, b, "difflib-fast") == ref(a, b)


@needs_df
@settings(max_examples=300, deadline=None)
@given(SMALL, SMALL)
def test_difflib_fast_small_alphabet_long(a, b):
    assert similarity(a, b, "difflib-fast") == ref(a, b)


@needs_df
@settings(max_examples=300, deadline=None)
@given(MIXED, MIXED)
def test_difflib_fast_unicode_nul_and_mixed_kinds(a, b):
    assert similarity(a, b, "difflib-fast") == ref(a, b)


@needs_df
@settings(max_examples=200, deadline=None)
@given(ALPHABET, ALPHABET)
def test_difflib_fast_and_exact_equal_difflib(a, b):
    assert similarity(a, b, "difflib-fast") == ref(a, b)
    assert similarity(a, b, "exact") == ref(a, b)


@needs_df
def test_difflib_fast_on_real_pairs_and_holdout_perturbations(shared_data):
    strings = real_actions(shared_data)
    rng = random.Random(5)
    # pure-Python difflib (the reference) needs seconds per long pair: a sample, each reference computed once
    pairs = [(rng.choice(strings), rng.choice(strings)) for _ in range(24)]
    pairs += [(s, s[: len(s) // 2] + "# edit\n" + s[len(s) // 2:]) for s in strings[:16]]
    for s in strings[:6]:
        pairs += holdout_perturbations(rng, s)
    assert any(len(a) + len(b) >= R.DIFFLIB_FAST_MIN_CHARS for a, b in pairs)
    want = [ref(a, b) for a, b in pairs]
    for (a, b), r in zip(pairs, want):
        assert similarity(a, b, "difflib-fast") == r, (a[:80], b[:80])
        assert similarity(a, b, "exact") == r
    # the batch API: same values, same order, 1 and 2 threads
    assert difflib_fast.ratio(pairs, threads=1) == want
    assert difflib_fast.ratio(pairs, threads=2) == want


@needs_df
def test_difflib_fast_lone_surrogates_fall_back():
    with pytest.raises(UnicodeEncodeError):      # the package itself refuses them ...
        difflib_fast.ratio("\ud800x\udfff", "x\ud800")
    for a, b in [("\ud800x\udfff", "x\ud800"), ("\udfff" * 800, "\udfff" * 790 + "ab" * 10)]:
        assert similarity(a, b, "difflib-fast") == ref(a, b)     # ... so we score them with our backend
        assert similarity(a, b, "exact") == ref(a, b)


@needs_df
def test_exact_picks_difflib_fast_for_long_pairs_only(monkeypatch):
    assert R.difflib_fast_available()
    calls = []
    real = difflib_fast.ratio
    monkeypatch.setattr(R._difflib_fast_mod, "ratio", lambda *a, **k: calls.append(a) or real(*a, **k))
    fn = R.get_similarity("exact")
    short, long_ = ("abxcd", "abcd"), ("ab" * 400, "ba" * 400)
    assert fn(*short) == ref(*short) and not calls
    if R.fast_available():
        assert fn(*long_) == ref(*long_) and len(calls) == 1
    # a failed self-check keeps exact on our own backend
    monkeypatch.setattr(R, "_difflib_fast_ok", None)
    monkeypatch.setattr(R._difflib_fast_mod, "ratio", lambda a, b: 0.5)
    with pytest.warns(RuntimeWarning, match="self-check"):
        assert not R.difflib_fast_available()
    assert R.get_similarity("exact") in (R._ratcliff_ratio, R._cydifflib, R._difflib)


@needs_df
def test_score_batch_threads_path_equals_scalar(shared_data):
    strings = real_actions(shared_data, 120)
    rng = random.Random(2)
    targets = [rng.choice(strings) for _ in range(60)] + ["<function=bash>\n<parameter=command>ls</parameter>\n</function>"]
    comps = [("no format " + t[:50]) if rng.random() < 0.2 else f"<think>m</think>{t[: rng.randint(1, len(t))]}"
             for t in targets[:-1]] + ["<think>x</think><function=bash><parameter=command>l\ud800s</parameter></function>"]
    scalar = [score_completion(c, t, backend="difflib") for c, t in zip(comps, targets)]
    for backend in ("exact", "difflib-fast"):
        for procs in (1, 2):
            assert score_batch(comps, targets, processes=procs, backend=backend) == scalar


def test_difflib_fast_missing_is_clear_error(monkeypatch):
    monkeypatch.setattr(R, "_difflib_fast_mod", None)
    monkeypatch.setattr(R, "_difflib_fast_ok", None)
    assert not R.difflib_fast_available()
    with pytest.raises(ImportError, match="difflib-fast"):
        similarity("a", "b", "difflib-fast")
    with pytest.raises(ImportError, match="difflib-fast"):
        score_batch(["<think>a</think>x"], ["x"], backend="difflib-fast")
    assert similarity("abxcd", "abcd", "exact") == ref("abxcd", "abcd")   # exact still works without it
