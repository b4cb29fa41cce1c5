"""Cut a worked solution into steps.

``decompose(solution)`` returns a Decomposition: an optional preamble (text before the first step, kept as
context, never a target), the steps, and the style that was recognized. Styles, tried in this order:

  step_header     ``### Step 1: Title`` (any markdown header level, ``**`` allowed around the label)
  step_bold       ``**Step 1: Title**`` / ``**Step 1.** Title``
  step_plain      ``Step 1: Title`` at the start of a line
  numbered_bold   ``1. **Title**: action`` / ``1. **Title:** action`` / ``1) **Title** action`` (DeepSeek-R1 style)
  numbered_plain  ``1. text`` at the start of a line (no title)
  fallback        anything else (see below)

A numbered style is used only when its markers at the start of a line (indent <= 1 space, so indented sub-lists
are ignored) count 1, 2, 3, … in order and there are at least two; markers that break the count are treated as
text. ``numbered_plain`` is also rejected when one item holds more than 60% of the text (a short enumerated list
of conditions followed by prose is not a step structure). Text after the last marker belongs to the last step.

Fallback for un-numbered solutions (prose like MATH / s1K reference solutions):
  1. split into paragraphs at blank lines, never inside math (``$…$``, ``$$…$$``, ``\\[…\\]``, ``\\(…\\)``,
     ``\\begin{env}…\\end{env}``, ``[asy]…[/asy]``);
  2. a paragraph that is only display math (or an [asy] picture) is joined to the paragraph before it, and a
     paragraph ending with ':' is joined to the one after it (an equation belongs to the sentence introducing it);
  3. a paragraph longer than ``max_chars`` (400) is cut between sentences (outside math) into groups of at most
     ``max_chars`` (a single longer sentence stays whole);
  4. pieces shorter than ``min_chars`` (80) are merged into the next piece (the last one into the previous).
Fallback steps have no title.

``rewrite_solution(generator, question, solution)`` asks a model to restate a solution in the paper's App. B.3
format (``1. **Title** action``) and returns the rewrite only when it passes ``check_rewrite_format``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from swe_srl.core.generation import Generator, SamplingParams

from .prompts import REWRITE_PROMPT

MIN_CHARS = 80
MAX_CHARS = 400  # calibrated: fallback step median ~280 chars on s1K, like its numbered R1-style steps (275)


@dataclass
class Step:
    number: int            # 1-based position in the solution
    text: str              # the whole step as written (marker + title + body)
    title: str | None      # the step title when the style has one
    body: str              # the step without its marker/title (the target in title-hint mode)
    hint: str | None       # what title-hint mode shows the model, e.g. "2. **Coprime Pairs**"


@dataclass
class Decomposition:
    style: str
    steps: list[Step]
    preamble: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def titles(self) -> list[str | None]:
        return [s.title for s in self.steps]


# -- structured styles ---------------------------------------------------------------------------------------
_B = r"(?:\*\*)?"
_STYLES: list[tuple[str, re.Pattern[str]]] = [
    ("step_header", re.compile(r"^ ?#{1,6}[ \t]*" + _B + r"Step[ \t]+(\d+)" + _B + r"[ \t]*[:.)\-–—]?[ \t]*(.*)$",
                               re.M | re.I)),
    ("step_bold", re.compile(r"^ ?\*\*Step[ \t]+(\d+)[ \t]*[:.)\-–—]?[ \t]*(.*)$", re.M | re.I)),
    ("step_plain", re.compile(r"^ ?Step[ \t]+(\d+)[ \t]*[:.)\-–—][ \t]*(.*)$", re.M | re.I)),
    ("numbered_bold", re.compile(r"^ ?(\d+)[.)][ \t]*\*\*(.+?)\*\*[ \t]*(.*)$", re.M)),
    ("numbered_plain", re.compile(r"^ ?(\d+)[.)][ \t]+(\S.*)$", re.M)),
]
_TITLE_MAX = 120


def _clean_title(t: str) -> str:
    t = t.strip().strip("*").strip()
    return t.rstrip(":").rstrip(".").strip() or ""


def _sequential(matches: list[re.Match[str]]) -> list[re.Match[str]]:
    out: list[re.Match[str]] = []
    for m in matches:
        if int(m.group(1)) == len(out) + 1:
            out.append(m)
    return out


def _split_header_line(style: str, m: re.Match[str]) -> tuple[str | None, str, str]:
    """(title, hint, rest-of-line-body) for one marker line."""
    if style == "numbered_bold":
        title = _clean_title(m.group(2))
        rest = m.group(3)
        rest = re.sub(r"^[:.\-–—]\s*", "", rest)  # "**Title**: action"
        hint = m.group(0)[:m.start(3) - m.start(0)].rstrip()
        return title or None, hint, rest
    if style == "numbered_plain":
        return None, "", m.group(0).strip()
    line_rest = m.group(2).strip()
    hint = m.group(0).strip()
    if style == "step_bold":
        # **Step 1: Title** rest   |   **Step 1:** Title   |   **Step 1: Title.** body
        close = line_rest.find("**")
        if close >= 0:
            inner, after = line_rest[:close], line_rest[close + 2:].strip()
            if _clean_title(inner):
                hint = m.group(0)[:m.start(2) - m.start(0)].strip() + " " + line_rest[:close + 2]
                return _clean_title(inner), hint.strip(), after
            line_rest = after
    title = _clean_title(line_rest)
    if title and len(title) <= _TITLE_MAX:
        return title, hint, ""
    return None, "", m.group(0).strip()


def _structured(text: str, style: str, pat: re.Pattern[str]) -> Decomposition | None:
    ms = _sequential(list(pat.finditer(text)))
    if len(ms) < 2:
        return None
    steps: list[Step] = []
    for i, m in enumerate(ms):
        end = ms[i + 1].start() if i + 1 < len(ms) else len(text)
        full = text[m.start():end].strip()
        title, hint, first = _split_header_line(style, m)
        rest = text[m.end():end].strip("\n")
        body = full if style == "numbered_plain" else (first + ("\n" if first else "") + rest).strip()
        steps.append(Step(i + 1, full, title, body, hint or None))
    if any(not s.body and not s.title for s in steps):
        return None
    preamble = text[:ms[0].start()].strip()
    if style == "numbered_plain":
        total = sum(len(s.text) for s in steps) + len(preamble)
        if max(len(s.text) for s in steps) > 0.6 * total:
            return None
    return Decomposition(style, steps, preamble)


# -- fallback ------------------------------------------------------------------------------------------------
_MATH_SPAN = re.compile(
    r"\$\$.*?\$\$|\\\[.*?\\\]|\\begin\{([a-zA-Z*]+)\}.*?\\end\{\1\}|\[asy\].*?\[/asy\]|\\\(.*?\\\)|(?<!\\)\$[^$]+?(?<!\\)\$",
    re.S)
_DISPLAY_ONLY = re.compile(r"^\s*(?:\$\$.*?\$\$|\\\[.*?\\\]|\\begin\{([a-zA-Z*]+)\}.*?\\end\{\1\}|\[asy\].*?\[/asy\])"
                           r"[\s.,;]*$", re.S)


def _protected(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _MATH_SPAN.finditer(text)]


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a < pos < b for a, b in spans)


def _cut(text: str, positions: list[int]) -> list[str]:
    out, prev = [], 0
    for p in positions:
        out.append(text[prev:p])
        prev = p
    out.append(text[prev:])
    return [s.strip() for s in out if s.strip()]


def _paragraphs(text: str) -> list[str]:
    spans = _protected(text)
    cuts = [m.start() for m in re.finditer(r"\n[ \t]*\n", text) if not _inside(m.start(), spans)]
    return _cut(text, cuts)


def _sentences(text: str) -> list[str]:
    spans = _protected(text)
    cuts = [m.end() for m in re.finditer(r"[.!?](?=\s+[A-Z$\\(])", text) if not _inside(m.start(), spans)]
    return _cut(text, cuts)


def _group(sentences: list[str], max_chars: int) -> list[str]:
    groups: list[str] = []
    cur = ""
    for s in sentences:
        if cur and len(cur) + 1 + len(s) > max_chars:
            groups.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}" if cur else s
    if cur:
        groups.append(cur)
    return groups


def fallback_steps(text: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[str]:
    paras = _paragraphs(text)
    joined: list[str] = []
    for p in paras:
        if joined and (_DISPLAY_ONLY.match(p) or joined[-1].rstrip().endswith(":")):
            joined[-1] = joined[-1] + "\n\n" + p
        else:
            joined.append(p)
    pieces: list[str] = []
    for p in joined:
        pieces.extend(_group(_sentences(p), max_chars) if len(p) > max_chars else [p])
    merged: list[str] = []
    carry = ""
    for p in pieces:
        p = f"{carry}\n\n{p}" if carry else p
        carry = ""
        if len(p) < min_chars:
            carry = p
        else:
            merged.append(p)
    if carry:
        if merged:
            merged[-1] = merged[-1] + "\n\n" + carry
        else:
            merged.append(carry)
    return merged


# -- API -----------------------------------------------------------------------------------------------------
def decompose(solution: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS,
              allow_fallback: bool = True) -> Decomposition:
    text = solution.replace("\r\n", "\n").strip()
    for style, pat in _STYLES:
        d = _structured(text, style, pat)
        if d is not None:
            return d
    if not allow_fallback:
        return Decomposition("none", [])
    parts = fallback_steps(text, min_chars=min_chars, max_chars=max_chars)
    return Decomposition("fallback", [Step(i + 1, p, None, p, None) for i, p in enumerate(parts)])


# -- rewrite mode (paper v3 App. B.3) ------------------------------------------------------------------------
def check_rewrite_format(text: str) -> str | None:
    """The numbered-bold solution inside a rewrite output, or None when it does not follow the format:
    optional 'SOLUTION:' line, then steps '1. **Title** action', '2. …' (at least two, counting from 1,
    every step titled and non-empty), nothing else before step 1."""
    s = text.strip()
    s = re.sub(r"^```\w*\n|\n```$", "", s).strip()
    s = re.sub(r"^\**SOLUTION:?\**:?\s*", "", s, flags=re.I)
    d = _structured(s, "numbered_bold", dict(_STYLES)["numbered_bold"])
    if d is None or d.preamble or len(d.steps) < 2:
        return None
    if any(not st.title or not st.body for st in d.steps):
        return None
    return s


def rewrite_solution(generator: Generator, question: str, solution: str, *, max_new_tokens: int = 2048,
                     temperature: float = 0.0) -> str | None:
    """Rewrite one solution into '1. **Title** action' steps with a ready Generator (any backend: the caller
    builds it); None if the output fails the format check."""
    out = rewrite_solutions(generator, [(question, solution)], max_new_tokens=max_new_tokens,
                            temperature=temperature)
    return out[0]


def rewrite_solutions(generator: Generator, items: Sequence[tuple[str, str]], *, max_new_tokens: int = 2048,
                      temperature: float = 0.0) -> list[str | None]:
    prompts = [[{"role": "user", "content": REWRITE_PROMPT.format(question=q, solution=s)}] for q, s in items]
    outs = generator.generate(prompts, SamplingParams(n=1, temperature=temperature, max_new_tokens=max_new_tokens))
    return [check_rewrite_format(o[0]) if o else None for o in outs]
