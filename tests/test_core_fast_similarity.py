"""The compiled Ratcliff/Obershelp (swe_srl.core._ratcliff) equals difflib bit for bit.

Skipped when the extension is not built, except under CI=true (CI always has a C compiler): there it fails.
"""

from __future__ import annotations

import difflib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from swe_srl.core import reward as R
from swe_srl.core import similarity

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

try:
    from swe_srl.core import _ratcliff
except ImportError as e:  # pragma: no cover - depends on the build
    if IN_CI:
        raise ImportError(f"swe_srl.core._ratcliff must be built under CI=true: {e}") from e
    pytest.skip(f"compiled extension swe_srl.core._ratcliff not built: {e}", allow_module_level=True)


def ref_ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def ref_blocks(a: str, b: str) -> list[tuple[int, int, int]]:
    return [tuple(m) for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()]


def check(a: str, b: str) -> None:
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    blocks = [tuple(m) for m in sm.get_matching_blocks()]
    r = _ratcliff.ratio(a, b)
    assert type(r) is float
    assert r == sm.ratio(), (a, b)   # exact float equality, not approx
    assert _ratcliff.matching_blocks(a, b) == blocks, (a, b)


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# many ties: tiny alphabets, repeated structure
tiny = st.text(alphabet="ab", max_size=40)
small = st.text(alphabet="ab \n", max_size=300)
# any code point except lone surrogates (those are tested separately), many kinds mixed
anychar = st.text(max_size=60)
# non-BMP mixed with ASCII and BMP (UCS1/UCS2/UCS4 string kinds on either side)
mixed = st.text(alphabet=st.sampled_from(["a", "b", " ", "é", "ÿ", "中", "\uffff", "\U0001F600", "\U00010348",
                                          "\U0010FFFF"]), max_size=80)


@FAST
@given(tiny, tiny)
@example("", "")
@example("", "a")
@example("a", "")
@example(" abcd", "abcd abcd")
@example("abxcd", "abcd")
def test_tiny_alphabet_ties(a, b):
    check(a, b)


@FAST
@given(small, small)
def test_small_alphabet_long(a, b):
    check(a, b)


@FAST
@given(anychar, anychar)
def test_any_code_points(a, b):
    check(a, b)


@FAST
@given(mixed, mixed)
@example("\U0001F600a", "a\U0001F600")
@example("ÿ", "\U0001F600ÿ")
def test_non_bmp_and_mixed_kinds(a, b):
    check(a, b)


@FAST
@given(small, st.data())
def test_substring_and_identical(a, data):
    i = data.draw(st.integers(0, len(a)))
    j = data.draw(st.integers(i, len(a)))
    sub = a[i:j]
    check(a, a)
    check(sub, a)
    check(a, sub)
    assert _ratcliff.ratio(a, a) == 1.0


@FAST
@given(small, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.text(alphabet="ab \nx", max_size=8)),
                       max_size=6))
def test_perturbed_copy(b, edits):
    a = b
    for pos, dele, ins in edits:
        p = pos % (len(a) + 1)
        a = a[:p] + ins + a[p + dele:]
    check(a, b)


def test_lone_surrogates_and_extremes():
    for a, b in [("\ud800x\udfff", "x\ud800"), ("\x00\x00", "\x00"), ("\U0010FFFF" * 3, "\U0010FFFF"),
                 ("a" * 500, "a" * 499), ("ab" * 300, "ba" * 300), ("", "x" * 1000)]:
        check(a, b)


def test_not_symmetric_and_argument_order():
    pairs = [(a, b) for a in ("abab", "aab", "ba", "bbaab") for b in ("baab", "abba", "ab", "aabb")]
    assert any(ref_ratio(a, b) != ref_ratio(b, a) for a, b in pairs)   # the order matters in difflib
    for a, b in pairs:
        assert _ratcliff.ratio(a, b) == ref_ratio(a, b)
        assert _ratcliff.ratio(b, a) == ref_ratio(b, a)


def test_type_errors():
    with pytest.raises(TypeError):
        _ratcliff.ratio(b"ab", "ab")
    with pytest.raises(TypeError):
        _ratcliff.ratio("ab")
    with pytest.raises(TypeError):
        _ratcliff.matching_blocks("ab", ["a"])


def test_random_many_small():
    rnd = random.Random(7)
    for _ in range(3000):
        alpha = rnd.choice(["ab", "abc", "a b\n", "xé中\U0001F600 "])
        a = "".join(rnd.choice(alpha) for _ in range(rnd.randint(0, 25)))
        b = "".join(rnd.choice(alpha) for _ in range(rnd.randint(0, 25)))
        assert _ratcliff.ratio(a, b) == ref_ratio(a, b), (a, b)


# -- real data ----------------------------------------------------------------------------------------------
def _long_texts(root: Path, min_chars: int = 2000) -> tuple[list[str], list[str]]:
    actions: list[str] = []
    observations: list[str] = []
    for f in sorted(root.glob("swe_trajectories/sweagent_traj/**/*.traj")):
        try:
            steps = json.loads(f.read_text()).get("trajectory", [])
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        for s in steps:
            if len(s.get("action") or "") >= min_chars:
                actions.append(s["action"])
            if len(s.get("observation") or "") >= min_chars:
                observations.append(s["observation"])
    return actions, observations


def _perturb(s: str, rnd: random.Random) -> str:
    out = s
    for _ in range(8):
        p = rnd.randrange(len(out) + 1)
        out = out[:p] + rnd.choice(["", "x", "    ", "self.", "\n"]) + out[p + rnd.randint(0, 30):]
    return out


@pytest.fixture(scope="module")
def real_long(shared_data):
    actions, observations = _long_texts(shared_data)
    if len(actions) < 4 or len(observations) < 4:
        pytest.fail("expected long actions and observations in swe_trajectories/sweagent_traj")
    rnd = random.Random(0)
    rnd.shuffle(actions)
    rnd.shuffle(observations)
    pairs = [(_perturb(a, rnd), a) for a in actions[:5]]
    pairs += [(actions[i], actions[i + 1]) for i in range(5, 11, 2)]
    pairs += [(observations[i], observations[i + 1]) for i in range(0, 6, 2)]
    pairs += [(actions[11][:1500] + actions[12][-900:], actions[11])]   # partial copy
    assert all(max(len(a), len(b)) >= 2000 for a, b in pairs)
    return pairs


def test_real_long_actions_and_observations(real_long):
    for a, b in real_long:
        check(a, b)


def test_exact_backend_uses_fast_and_matches(real_long):
    assert R.fast_available()
    # exact = our C function itself, or (difflib-fast installed and self-checked) the hybrid that routes long pairs
    assert R.get_similarity("exact") is (R._hybrid if R.difflib_fast_available() else _ratcliff.ratio)
    assert R.get_similarity("fast") is _ratcliff.ratio
    for a, b in real_long[:6]:
        r = ref_ratio(a, b)
        assert similarity(a, b, "exact") == r
        assert similarity(a, b, "fast") == r


def test_threads_give_same_results(real_long):
    # the GIL is released during matching: concurrent calls must not share state
    want = [_ratcliff.ratio(a, b) for a, b in real_long]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(lambda p: _ratcliff.ratio(*p), real_long)) == want


def test_fallback_when_extension_missing(monkeypatch):
    monkeypatch.setattr(R, "_ratcliff_ratio", None)
    assert not R.fast_available()
    if R.difflib_fast_available():      # the optional difflib-fast, self-checked against difflib, then serves exact
        assert R.get_similarity("exact") is R._difflib_fast
        assert similarity("abxcd", "abcd", "exact") == ref_ratio("abxcd", "abcd")
    monkeypatch.setattr(R, "_difflib_fast_mod", None)
    monkeypatch.setattr(R, "_difflib_fast_ok", None)
    assert R.get_similarity("exact") in (R._cydifflib, R._difflib)
    assert similarity("abxcd", "abcd", "exact") == ref_ratio("abxcd", "abcd")
    with pytest.raises(ImportError, match="_ratcliff"):
        similarity("a", "b", "fast")


def test_generation_wraparound(tmp_path):
    """The j2len generation counter is 32-bit; build a copy that starts just below the wrap and compare."""
    import importlib.util
    import shutil
    import subprocess
    import sysconfig

    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build the wrap-around variant")
    src = Path(R.__file__).with_name("_ratcliff.c")
    so = tmp_path / ("_ratcliff" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-DRC_GEN_START=(UINT32_MAX-700u)",
                    "-I", sysconfig.get_paths()["include"], str(src), "-o", str(so)], check=True)
    spec = importlib.util.spec_from_file_location("_ratcliff", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rnd = random.Random(3)
    for _ in range(300):
        b = "".join(rnd.choice("ab \n") for _ in range(rnd.randint(0, 300)))
        a = _perturb(b, rnd) if rnd.random() < 0.5 else "".join(rnd.choice("ab \n") for _ in range(len(b)))
        assert mod.ratio(a, b) == ref_ratio(a, b)
        assert mod.matching_blocks(a, b) == ref_blocks(a, b)
