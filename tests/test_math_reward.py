"""Final-answer checker: boxed extraction, equivalence (math-verify), hard timeouts from any thread."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from math_srl.reward import _worker, answer_reward, extract_boxed


def test_extract_boxed():
    assert extract_boxed("x \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}.") == "\\frac{1}{\\sqrt{2}}"
    assert extract_boxed("nested \\boxed{\\{1, \\{2\\}\\}}") == "\\{1, \\{2\\}\\}"
    assert extract_boxed("\\boxed 5$") == "5"
    assert extract_boxed("\\fbox{7}") == "7"
    assert extract_boxed("unclosed \\boxed{3") is None
    assert extract_boxed("no box") is None and extract_boxed(None) is None


@pytest.mark.parametrize("pred,gold", [
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac{3}{4}", "\\frac34"),
    ("\\tfrac{3}{4}", "0.75"),
    ("5\\text{ cm}", "5"),
    ("90^\\circ", "90"),
    ("[1, 3)", "[1,3)"),
    ("(-\\infty, 2]", "(-\\infty,2]"),
    ("\\{2, 1\\}", "\\{1,2\\}"),
    ("3\\sqrt{2}", "\\sqrt{18}"),
    ("x = 3", "3"),
    ("27", 27.0),           # AMC23 stores answers as floats
    ("(B)", "B"),
    ("\\text{(C)}", "C"),
    ("\\textbf{(B) }12", "B"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
])
def test_equivalent(pred, gold):
    assert answer_reward(f"<think>hm</think> so the answer is \\boxed{{{pred}}}.", gold) == 1.0


@pytest.mark.parametrize("pred,gold", [
    ("\\frac{1}{3}", "0.5"),
    ("(1, 3)", "[1,3)"),
    ("[1, 3]", "[1,3)"),
    ("A", "C"),
    ("\\text{(A) }12", "B"),
    ("28", 27.0),
    ("x^2", "\\frac{1}{2}"),
    ("", "1"),
])
def test_not_equivalent(pred, gold):
    assert answer_reward(f"\\boxed{{{pred}}}", gold) == 0.0


def test_needs_a_box_and_uses_the_last_one():
    assert answer_reward("The answer is 5.", "5") == 0.0
    assert answer_reward("\\boxed{4} no wait \\boxed{5}", "5") == 1.0
    assert answer_reward("\\boxed{5} no wait \\boxed{4}", "5") == 0.0


def test_hang_is_cut_at_timeout_and_worker_recovers():
    w = _worker()
    t = time.monotonic()
    assert w.check("1", "2", 1.0, _sleep=30) is False   # a "hanging" sympy call
    assert time.monotonic() - t < 5
    assert answer_reward("\\boxed{\\frac{2}{4}}", "0.5", timeout=5.0) == 1.0  # fresh worker, same answers


def test_works_outside_the_main_thread():
    results: dict[int, list[float]] = {}

    def run(i: int) -> None:
        out = [answer_reward("\\boxed{\\sqrt{8}}", "2\\sqrt{2}"), answer_reward("\\boxed{\\sqrt{8}}", "3")]
        t = time.monotonic()
        out.append(float(_worker().check("1", "2", 1.0, _sleep=30)))
        out.append(time.monotonic() - t)
        results[i] = out

    th = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for x in th:
        x.start()
    for x in th:
        x.join(60)
    assert not any(x.is_alive() for x in th)
    for out in results.values():
        assert out[:3] == [1.0, 0.0, 0.0]
        assert out[3] < 10  # waits for the other thread's call at most


def test_answer_reward_function_refuses_to_exist_without_math_verify(monkeypatch):
    from math_srl.reward import AnswerReward, require_math_verify
    from swe_srl.core.task import TaskError

    require_math_verify()                                  # installed here
    assert AnswerReward()(None, ["\\boxed{0.5}"], ["\\frac{1}{2}"]) == [1.0]
    monkeypatch.setitem(sys.modules, "math_verify", None)  # now it cannot be imported
    with pytest.raises(TaskError, match="math-verify") as e:
        AnswerReward()
    assert "\n" not in str(e.value)
