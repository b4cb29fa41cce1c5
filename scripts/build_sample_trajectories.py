"""Regenerate the sample SWE tasks' ``task.json`` files and their expert trajectories (a developer tool; not shipped
in the wheel).

    python scripts/build_sample_trajectories.py [TASK_ID ...] [--out DIR]   # needs /testbed to be absent
                                                                            # (it is created and removed)

For each task: materialize the base repo, derive the gold patch and the test patch with ``git diff`` from the edits
below, then materialize the repo AT /testbed and really run the expert's actions there (bash through /bin/bash -c
with cwd /testbed; str_replace_editor through the project's own editor, environments.tools.editor, on the files at
/testbed), recording the outputs as the observations. ``--out`` writes ``DIR/<task_id>/`` instead of the bundled
``swe_srl/sample_tasks/swe/<task_id>/`` (to diff a regeneration against the bundled files). The only normalization: the elapsed time in unittest's ``Ran N tests in X.XXXs`` line is written
as 0.001s, so the files are byte-identical from run to run. Everything else is the true output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from environments.tools.editor import StrReplaceEditor  # noqa: E402
from swe_srl.sample_tasks import _GIT_ENV, SANDBOX_REPO_DIR, SWE_DIR, base_commit, git, materialize_repo  # noqa: E402

# the name written into the trajectories' info (kept as first published, so regenerated files stay byte-identical)
GENERATED_BY = "swe_srl.sample_tasks._build_trajectories"
TIMESTAMP = 1735689600.0  # 2025-01-01T00:00:00Z, fixed for determinism

# ---------------------------------------------------------------------------------------------------------------
# The tasks
# ---------------------------------------------------------------------------------------------------------------

INTERVALS_ISSUE = """\
merge() keeps intervals that touch at an end point apart

The docstring of `merge` says the intervals are closed and that intervals sharing an end point are merged, but
they are not:

```python
>>> from intervals import merge
>>> merge([(1, 3), (3, 5)])
[(1, 3), (3, 5)]
```

I expected `[(1, 5)]`. Because of this `total_length` is still right, but anything that counts the merged
blocks (we use `len(merge(...))` to count busy periods in a calendar) gets one block too many whenever a meeting
ends exactly when the next one starts.
"""

TINYINI_ISSUE = """\
parse() crashes when a value contains '='

Reading a config file whose values contain an equals sign fails with a confusing error:

```python
>>> from tinyini import parse
>>> parse("[db]\\nurl = postgres://db.local/app?sslmode=require")
Traceback (most recent call last):
  ...
ValueError: too many values to unpack (expected 2)
```

Only the first `=` on a line should separate the key from the value; the rest belongs to the value, so this
should give `{'db': {'url': 'postgres://db.local/app?sslmode=require'}}`. Connection strings and base64 padding
(`token = abc==`) both hit this.
"""

MONEYFMT_ISSUE = """\
format_money shows one cent less for some amounts

Some prices come out one cent short on our receipts:

```python
>>> from moneyfmt import format_money, to_cents
>>> format_money(19.99)
'$19.98'
>>> to_cents(0.29)
28
```

Expected `'$19.99'` and `29`. It looks like the float is truncated instead of rounded when it is converted to
cents (19.99 * 100 is 1998.9999999999998 in binary floating point). `total()` is affected as well since it goes
through `to_cents`.
"""

TEXTKIT_ISSUE = """\
truncate() returns text longer than the requested width

`truncate(text, width)` is documented to return at most `width` characters, but the suffix is added on top of
the cut text:

```python
>>> from textkit import truncate
>>> truncate("hello brave new world", 10)
'hello brav...'
>>> len(_)
13
```

This breaks our fixed-width table layout. The suffix should count towards the width, e.g. `'hello b...'` here
(no dangling space before the suffix would be nice too). A width smaller than the suffix should not return
more than `width` characters either.
"""

TEXTKIT_OLD = """\
    if len(text) <= width:
        return text
    return text[:width] + suffix
"""
TEXTKIT_NEW = """\
    if len(text) <= width:
        return text
    if width <= len(suffix):
        return suffix[:width]
    return text[: width - len(suffix)].rstrip() + suffix
"""

MONEY_OLD = "    return int(amount * 100)\n"
MONEY_NEW = "    return round(amount * 100)\n"

TASKS: dict[str, dict] = {
    "sample__intervals-1": {
        "repo": "swe-srl-samples/intervals",
        "format": "minisweagent",
        "problem_statement": INTERVALS_ISSUE,
        "gold": [("intervals.py", "        if merged and start < merged[-1][1]:\n",
                  "        if merged and start <= merged[-1][1]:\n")],
        "tests": [("tests/test_intervals.py", '''    def test_total_length(self):
        self.assertEqual(total_length([(0, 3), (1, 5), (10, 11)]), 6)
''', '''    def test_total_length(self):
        self.assertEqual(total_length([(0, 3), (1, 5), (10, 11)]), 6)

    def test_touching_intervals_are_merged(self):
        self.assertEqual(merge([(1, 3), (3, 5)]), [(1, 5)])
        self.assertEqual(merge([(4, 6), (0, 2), (2, 4)]), [(0, 6)])
''')],
        "test_module": "tests.test_intervals",
        "FAIL_TO_PASS": ["tests.test_intervals.MergeTests.test_touching_intervals_are_merged"],
        "PASS_TO_PASS": [
            "tests.test_intervals.MergeTests.test_disjoint_intervals_are_sorted",
            "tests.test_intervals.MergeTests.test_overlapping_intervals_are_merged",
            "tests.test_intervals.MergeTests.test_reversed_pair_is_normalized",
            "tests.test_intervals.MergeTests.test_total_length",
        ],
        "steps": [
            ("Let me start by looking at what files the repository has.",
             ("bash", "find /testbed -type f -not -path '*/.git/*' | sort")),
            ("The code is in a single module. Let me read `intervals.py` to see how `merge` decides whether two "
             "intervals overlap.",
             ("bash", "cat /testbed/intervals.py")),
            ("`merge` only joins the next interval when `start < merged[-1][1]`, a strict comparison, so an interval "
             "that starts exactly where the previous one ends is kept apart. Let me reproduce the issue first.",
             ("bash", "cd /testbed && python3 -c 'from intervals import merge; print(merge([(1, 3), (3, 5)]))'")),
            ("Reproduced: the touching intervals stay separate. Since the intervals are closed, a shared end point "
             "is an overlap, so the comparison must be `<=`. Let me fix it with sed and check the line.",
             ("bash", "sed -i 's/start < merged\\[-1\\]\\[1\\]/start <= merged[-1][1]/' /testbed/intervals.py "
                      "&& grep -n 'merged\\[-1\\]\\[1\\]' /testbed/intervals.py")),
            ("Now let me verify the fix with the example from the issue, an unsorted chain of touching intervals, "
             "and the existing test suite.",
             ("bash", "cd /testbed && python3 -c 'from intervals import merge; print(merge([(1, 3), (3, 5)]), "
                      "merge([(4, 6), (0, 2), (2, 4)]))' && python3 -m unittest tests.test_intervals")),
            ("The example now gives `[(1, 5)]`, chains are merged and all existing tests pass. The change is "
             "minimal, so I will submit it.",
             ("bash", "cd /testbed && echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached")),
        ],
    },
    "sample__tinyini-2": {
        "repo": "swe-srl-samples/tinyini",
        "format": "minisweagent",
        "problem_statement": TINYINI_ISSUE,
        "gold": [("tinyini.py", '        key, value = line.split("=")\n', '        key, value = line.split("=", 1)\n')],
        "tests": [("tests/test_tinyini.py", '''    def test_line_without_equals_is_an_error(self):
        with self.assertRaises(ParseError):
            parse("[a]\\njust some words\\n")
''', '''    def test_line_without_equals_is_an_error(self):
        with self.assertRaises(ParseError):
            parse("[a]\\njust some words\\n")

    def test_value_may_contain_equals_signs(self):
        data = parse("[db]\\nurl = postgres://db.local/app?sslmode=require\\ntoken = abc==\\n")
        self.assertEqual(data["db"]["url"], "postgres://db.local/app?sslmode=require")
        self.assertEqual(data["db"]["token"], "abc==")
''')],
        "test_module": "tests.test_tinyini",
        "FAIL_TO_PASS": ["tests.test_tinyini.ParseTests.test_value_may_contain_equals_signs"],
        "PASS_TO_PASS": [
            "tests.test_tinyini.ParseTests.test_get_is_case_insensitive",
            "tests.test_tinyini.ParseTests.test_key_outside_section_is_an_error",
            "tests.test_tinyini.ParseTests.test_line_without_equals_is_an_error",
            "tests.test_tinyini.ParseTests.test_sections_and_keys",
        ],
        "steps": [
            ("I need to find the parser code first. Let me list the repository.",
             ("bash", "ls -a /testbed /testbed/tests")),
            ("The parser is `tinyini.py`. Let me look for the place where a line is split into key and value.",
             ("bash", "grep -n 'split' /testbed/tinyini.py")),
            ("Line 24 splits on every `=`, so a value that contains `=` gives more than two parts and the tuple "
             "unpacking fails. Let me reproduce it with the example from the issue.",
             ("bash", "cd /testbed && python3 -c 'from tinyini import parse; "
                      "print(parse(\"[db]\\nurl = postgres://db.local/app?sslmode=require\"))'")),
            ("Same ValueError as in the issue. Only the first `=` separates key and value, so the split needs "
             "`maxsplit=1`. Let me make that change.",
             ("bash", "sed -i 's/line.split(\"=\")/line.split(\"=\", 1)/' /testbed/tinyini.py "
                      "&& sed -n '20,26p' /testbed/tinyini.py")),
            ("Let me check the issue's example, a value with trailing `==`, and the existing tests.",
             ("bash", "cd /testbed && python3 -c 'from tinyini import parse; "
                      "print(parse(\"[db]\\nurl = postgres://db.local/app?sslmode=require\\ntoken = abc==\"))' "
                      "&& python3 -m unittest tests.test_tinyini")),
            ("Both values are parsed correctly and the existing tests still pass. Submitting.",
             ("bash", "cd /testbed && echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached")),
        ],
    },
    "sample__moneyfmt-3": {
        "repo": "swe-srl-samples/moneyfmt",
        "format": "sweagent",
        "problem_statement": MONEYFMT_ISSUE,
        "gold": [("moneyfmt.py", MONEY_OLD, MONEY_NEW)],
        "tests": [("tests/test_moneyfmt.py", '''    def test_to_cents_of_exact_amounts(self):
        self.assertEqual(to_cents(0.5), 50)
        self.assertEqual(total([1.25, 2.5]), "$3.75")
''', '''    def test_to_cents_of_exact_amounts(self):
        self.assertEqual(to_cents(0.5), 50)
        self.assertEqual(total([1.25, 2.5]), "$3.75")

    def test_amounts_not_exact_in_binary_are_rounded(self):
        self.assertEqual(to_cents(0.29), 29)
        self.assertEqual(format_money(19.99), "$19.99")
        self.assertEqual(format_money(-0.29), "-$0.29")
        self.assertEqual(total([0.1, 0.2, 19.99]), "$20.29")
''')],
        "test_module": "tests.test_moneyfmt",
        "FAIL_TO_PASS": ["tests.test_moneyfmt.FormatTests.test_amounts_not_exact_in_binary_are_rounded"],
        "PASS_TO_PASS": [
            "tests.test_moneyfmt.FormatTests.test_negative_amounts_put_the_sign_first",
            "tests.test_moneyfmt.FormatTests.test_other_currencies",
            "tests.test_moneyfmt.FormatTests.test_to_cents_of_exact_amounts",
            "tests.test_moneyfmt.FormatTests.test_whole_amounts",
        ],
        "steps": [
            ("Let me first get an overview of the repository.",
             ("str_replace_editor", {"command": "view", "path": "/testbed"})),
            ("The logic lives in `moneyfmt.py`. Let me open it.",
             ("str_replace_editor", {"command": "view", "path": "/testbed/moneyfmt.py"})),
            ("`to_cents` uses `int(amount * 100)`, which truncates towards zero, so 1998.9999999999998 becomes "
             "1998. Let me reproduce the issue.",
             ("bash", "cd /testbed && python3 -c 'from moneyfmt import format_money, to_cents; "
                      "print(format_money(19.99), to_cents(0.29))'")),
            ("Confirmed. Rounding to the nearest cent fixes it; `round()` on a float with no ndigits already "
             "returns an int, and it works for negative amounts too.",
             ("str_replace_editor", {"command": "str_replace", "path": "/testbed/moneyfmt.py",
                                     "old_str": MONEY_OLD.rstrip("\n"), "new_str": MONEY_NEW.rstrip("\n")})),
            ("Let me check the examples from the issue, a negative amount and a total, then run the existing tests.",
             ("bash", "cd /testbed && python3 -c 'from moneyfmt import format_money, to_cents, total; "
                      "print(format_money(19.99), to_cents(0.29), format_money(-0.29), total([0.1, 0.2, 19.99]))' "
                      "&& python3 -m unittest tests.test_moneyfmt")),
            ("All amounts are right now and the existing tests pass. Submitting the fix.",
             ("submit", {})),
        ],
    },
    "sample__textkit-4": {
        "repo": "swe-srl-samples/textkit",
        "format": "sweagent",
        "problem_statement": TEXTKIT_ISSUE,
        "gold": [("textkit.py", TEXTKIT_OLD, TEXTKIT_NEW)],
        "tests": [("tests/test_textkit.py", '''    def test_long_text_gets_the_suffix(self):
        self.assertTrue(truncate("x" * 40, 12).endswith("..."))
        self.assertTrue(truncate("x" * 40, 12, suffix="~").endswith("~"))
''', '''    def test_long_text_gets_the_suffix(self):
        self.assertTrue(truncate("x" * 40, 12).endswith("..."))
        self.assertTrue(truncate("x" * 40, 12, suffix="~").endswith("~"))

    def test_result_never_exceeds_width(self):
        self.assertEqual(truncate("hello brave new world", 10), "hello b...")
        self.assertEqual(truncate("hello brave new world", 9), "hello...")
        for width in range(0, 25):
            self.assertLessEqual(len(truncate("hello brave new world", width)), width)
''')],
        "test_module": "tests.test_textkit",
        "FAIL_TO_PASS": ["tests.test_textkit.TextTests.test_result_never_exceeds_width"],
        "PASS_TO_PASS": [
            "tests.test_textkit.TextTests.test_long_text_gets_the_suffix",
            "tests.test_textkit.TextTests.test_short_text_is_unchanged",
            "tests.test_textkit.TextTests.test_squash_spaces",
        ],
        "steps": [
            ("Let me look at the repository layout first.",
             ("str_replace_editor", {"command": "view", "path": "/testbed"})),
            ("`truncate` should be in `textkit.py`.",
             ("str_replace_editor", {"command": "view", "path": "/testbed/textkit.py"})),
            ("The cut keeps `width` characters and then appends the suffix, so the result is `len(suffix)` too "
             "long. Let me reproduce with the issue's example.",
             ("bash", "cd /testbed && python3 -c 'from textkit import truncate; "
                      "s = truncate(\"hello brave new world\", 10); print(repr(s), len(s))'")),
            ("Reproduced. The suffix must fit inside the width: keep `width - len(suffix)` characters, strip a "
             "trailing space, then add the suffix. If the width cannot even hold the suffix, return the suffix cut "
             "to the width.",
             ("str_replace_editor", {"command": "str_replace", "path": "/testbed/textkit.py",
                                     "old_str": TEXTKIT_OLD.rstrip("\n"), "new_str": TEXTKIT_NEW.rstrip("\n")})),
            ("Let me check several widths, including ones smaller than the suffix, and run the existing tests.",
             ("bash", "cd /testbed && python3 -c 'from textkit import truncate; "
                      "print([truncate(\"hello brave new world\", w) for w in (2, 9, 10, 30)])' "
                      "&& python3 -m unittest tests.test_textkit")),
            ("No result is longer than its width and the existing tests pass. Submitting.",
             ("submit", {})),
        ],
    },
}

# ---------------------------------------------------------------------------------------------------------------
# Running actions for real
# ---------------------------------------------------------------------------------------------------------------

_RAN_RE = re.compile(r"^(Ran \d+ tests? in )\d+\.\d+s$", re.MULTILINE)


def normalize_output(text: str) -> str:
    return _RAN_RE.sub(r"\g<1>0.001s", text)


def run_bash(command: str, cwd: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8", "PAGER": "cat", "TERM": "dumb"}
    for k, v in os.environ.items():  # keep the interpreter the same (pyenv shims etc.)
        if k.startswith("PYENV"):
            env[k] = v
    env.update(_GIT_ENV)
    proc = subprocess.run(["/bin/bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    return proc.returncode, normalize_output(proc.stdout)


class _HostRepo:
    """What environments.tools.editor needs of a sandbox and its runtime, on the repo materialized at /testbed
    (the expert's paths are real host paths here)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.sandbox = self

    def resolve(self, path: str) -> str:
        if os.path.commonpath([os.path.abspath(path), self.root]) != self.root:
            raise ValueError(f"{path}: outside {self.root}")
        return os.path.abspath(path)

    def run(self, command: str, timeout: float = 60) -> SimpleNamespace:
        rc, out = run_bash(command, self.root)
        return SimpleNamespace(exit_code=rc, output=out)

    def read_file(self, path: str) -> str:
        return Path(path).read_text()

    def write_file(self, path: str, content: str) -> None:
        Path(path).write_text(content)


def sweagent_action_string(tool: str, args: dict) -> str:
    if tool == "bash":
        return args["command"]
    if tool == "submit":
        return "submit"
    parts = ["str_replace_editor", args["command"], args["path"]]
    text = " ".join(parts)
    for key in ("old_str", "new_str"):
        if key in args:
            text += f" --{key} " + "'" + args[key].replace("'", "'\\''") + "'"
    return text


# ---------------------------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------------------------

def _edited_diff(task_id: str, edits: list[tuple[str, str, str]]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        repo = materialize_repo(task_id, Path(tmp) / "repo")
        for rel, old, new in edits:
            p = repo / rel
            text = p.read_text()
            assert text.count(old) == 1, (task_id, rel, old)
            p.write_text(text.replace(old, new))
        return git(repo, "diff")


# ---------------------------------------------------------------------------------------------------------------
# Trajectory writers
# ---------------------------------------------------------------------------------------------------------------

MINI_SYSTEM = "You are a careful software engineer who solves programming tasks by running shell commands.\n"
MINI_INSTANCE = """<pr_description>
Please fix the problem described in this issue:
{task}
</pr_description>

<instructions>
You work in a Linux shell; the repository is checked out at /testbed. Change non-test source files so that the
issue is fixed. Do not edit the tests.

Answer with a THOUGHT section that explains what you are doing and why, followed by exactly one bash command in
a ```bash block (also sent as a `bash` tool call). Every command runs in a fresh subshell, so `cd` does not
persist: prefix commands with `cd /testbed &&` where needed.

A good order of work: read the relevant code, reproduce the problem, edit the source, check the fix and run the
existing tests.

When you are done, submit with this exact command and nothing else:
echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached
</instructions>"""

SWEA_SYSTEM = "You are a helpful assistant that can interact with a computer to solve tasks."
SWEA_INSTANCE = """<uploaded_files>
{working_dir}
</uploaded_files>
The python repository is uploaded to {working_dir}. Here is the issue to resolve:

<pr_description>
{problem_statement}
</pr_description>

Make the smallest change to the non-test files in {working_dir} that resolves the issue; the tests are taken care
of. Suggested steps: read the relevant code, reproduce the bug with `python3`, fix the source with the editor tool,
re-run your reproduction and the existing tests, then call `submit`."""


def build_minisweagent(task_id: str, spec: dict, task: dict, root: str) -> dict:
    user = MINI_INSTANCE.format(task=spec["problem_statement"].rstrip("\n"))
    messages: list[dict] = [{"role": "system", "content": MINI_SYSTEM}, {"role": "user", "content": user}]
    submission = None
    for i, (thought, (tool, command)) in enumerate(spec["steps"]):
        assert tool == "bash"
        call_id = f"call_{i:02d}_{task_id.replace('-', '_')}"
        ts = TIMESTAMP + 2 * i
        content = f"THOUGHT: {thought}\n\n```bash\n{command}\n```"
        messages.append({
            "content": content, "role": "assistant",
            "tool_calls": [{"index": 0, "function": {"arguments": json.dumps({"command": command}), "name": "bash"},
                            "id": call_id, "type": "function"}],
            "function_call": None, "provider_specific_fields": None,
            "extra": {"actions": [{"command": command, "tool_call_id": call_id}], "cost": 0.0, "timestamp": ts},
        })
        rc, out = run_bash(command, root)  # a failing reproduction is a legitimate observation
        messages.append({
            "content": f"<returncode>{rc}</returncode>\n<output>\n{out}</output>",
            "extra": {"raw_output": out, "returncode": rc, "timestamp": ts + 1, "exception_info": ""},
            "tool_call_id": call_id, "role": "tool",
        })
        first, _, rest = out.partition("\n")
        if first.strip() == "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT":
            submission = rest
    assert submission is not None, task_id
    messages.append({"role": "exit", "content": submission,
                     "extra": {"exit_status": "Submitted", "submission": submission}})
    info = {
        "model_stats": {"instance_cost": 0.0, "api_calls": len(spec["steps"])},
        "config": {
            "agent": {"system_template": MINI_SYSTEM, "instance_template": MINI_INSTANCE.replace("{task}", "{{task}}"),
                      "step_limit": 250, "cost_limit": 3.0, "output_path": None},
            "agent_type": "expert_demonstration",
            "model": {"model_name": "expert-demonstration", "model_kwargs": {}},
            "model_type": "expert_demonstration",
            "environment": {"cwd": SANDBOX_REPO_DIR, "env": {"PAGER": "cat"}, "timeout": 60,
                            "interpreter": ["bash", "-c"]},
            "environment_type": "local_testbed",
        },
        "mini_version": "2.2.7",
        "exit_status": "Submitted",
        "submission": submission,
        "generated_by": GENERATED_BY,
        "base_commit": task["base_commit"],
    }
    return {"info": info, "messages": messages, "trajectory_format": "mini-swe-agent-1.1", "instance_id": task_id}


def build_sweagent(task_id: str, spec: dict, task: dict, root: str) -> dict:
    editor = StrReplaceEditor(_HostRepo(root))
    user_text = SWEA_INSTANCE.format(working_dir=SANDBOX_REPO_DIR,
                                     problem_statement=spec["problem_statement"].rstrip("\n"))
    history: list[dict] = [
        {"role": "system", "content": SWEA_SYSTEM, "agent": "main", "message_type": "system_prompt"},
        {"role": "user", "content": [{"type": "text", "text": user_text}], "agent": "main",
         "message_type": "observation"},
    ]
    trajectory = []
    submission = None
    for i, (thought, (tool, args)) in enumerate(spec["steps"]):
        call_id = f"call_{i:02d}_{task_id.replace('-', '_')}"
        if isinstance(args, str):
            args = {"command": args}
        if tool == "bash":
            rc, out = run_bash(args["command"], root)
            observation = out.rstrip("\n")
        elif tool == "str_replace_editor":
            observation = editor(args)
        elif tool == "submit":
            rc, out = run_bash("git add -A && git diff --cached", root)
            submission = out
            observation = out
        else:
            raise ValueError(tool)
        action = sweagent_action_string(tool, args)
        history.append({"role": "assistant", "content": thought, "thought": thought, "action": action,
                        "agent": "main",
                        "tool_calls": [{"index": 1, "function": {"arguments": json.dumps(args), "name": tool},
                                        "id": call_id, "type": "function"}],
                        "message_type": "action"})
        history.append({"role": "tool", "content": [{"type": "text", "text": "OBSERVATION:\n" + observation}],
                        "agent": "main", "message_type": "observation", "tool_call_ids": [call_id]})
        trajectory.append({"action": action, "observation": observation, "response": thought, "thought": thought,
                           "execution_time": 0.1, "state": {"working_dir": SANDBOX_REPO_DIR},
                           "messages": json.loads(json.dumps(history)), "extra_info": {}})
    assert submission is not None, task_id
    replay_config = {
        "env": {"deployment": {"image": "python:3.11-slim", "type": "docker"},
                "repo": {"repo_name": "testbed", "base_commit": task["base_commit"], "type": "preexisting"},
                "post_startup_commands": [], "name": "main"},
        "agent": {"name": task_id, "templates": {"system_template": SWEA_SYSTEM,
                                                  "instance_template": SWEA_INSTANCE.replace("{working_dir}", "{{working_dir}}").replace("{problem_statement}", "{{problem_statement}}")},
                  "tools": {"bundles": [{"path": "tools/registry"}, {"path": "tools/edit_anthropic"},
                                        {"path": "tools/submit"}], "parse_function": {"type": "function_calling"}},
                  "type": "default"},
        "problem_statement": {"text": spec["problem_statement"], "id": task_id, "type": "text"},
    }
    info = {
        "swe_agent_version": "1.0.1",
        "submission": submission,
        "exit_status": "submitted",
        "model_stats": {"instance_cost": 0.0, "tokens_sent": 0, "tokens_received": 0,
                        "api_calls": len(spec["steps"])},
        "generated_by": GENERATED_BY,
    }
    return {"trajectory": trajectory, "history": history, "info": info,
            "replay_config": json.dumps(replay_config), "environment": task_id}


# ---------------------------------------------------------------------------------------------------------------

def build_task(task_id: str, spec: dict, out_root: Path = SWE_DIR) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        commit = base_commit(materialize_repo(task_id, Path(tmp) / "r"))
    gold = _edited_diff(task_id, spec["gold"])
    test_patch = _edited_diff(task_id, spec["tests"])
    fmt = spec["format"]
    traj_name = f"{task_id}.traj.json" if fmt == "minisweagent" else f"{task_id}.traj"
    task = {
        "instance_id": task_id,
        "repo": spec["repo"],
        "base_commit": commit,
        "problem_statement": spec["problem_statement"],
        "gold_patch": gold,
        "patch": gold,
        "test_patch": test_patch,
        "FAIL_TO_PASS": spec["FAIL_TO_PASS"],
        "PASS_TO_PASS": spec["PASS_TO_PASS"],
        "test_cmd": f"python3 -m unittest -v {spec['test_module']}",
        "version": "1.0",
        "environment_setup_commit": commit,
        "created_at": "2025-01-01T00:00:00Z",
        "hints_text": "",
        "trajectory": traj_name,
        "trajectory_format": "mini-swe-agent-1.1" if fmt == "minisweagent" else "swe-agent-1.x",
    }
    if os.path.lexists(SANDBOX_REPO_DIR):
        raise SystemExit(f"{SANDBOX_REPO_DIR} exists; move it away before regenerating the trajectories")
    try:
        materialize_repo(task_id, SANDBOX_REPO_DIR)
        build = build_minisweagent if fmt == "minisweagent" else build_sweagent
        traj = build(task_id, spec, task, SANDBOX_REPO_DIR)
        final_diff = git(SANDBOX_REPO_DIR, "diff", "HEAD")
    finally:
        shutil.rmtree(SANDBOX_REPO_DIR, ignore_errors=True)
    if final_diff != gold:
        raise RuntimeError(f"{task_id}: trajectory diff != gold patch\n{final_diff}\n---\n{gold}")
    out_dir = out_root / task_id
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "task.json").write_text(json.dumps(task, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / traj_name).write_text(json.dumps(traj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{task_id}: base {commit[:10]}, {len(spec['steps'])} actions -> {traj_name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task_ids", nargs="*", metavar="TASK_ID",
                    help=f"tasks to regenerate (default: all of {', '.join(TASKS)})")
    ap.add_argument("--out", type=Path, default=SWE_DIR, help="write DIR/<task_id>/ (default: %(default)s)")
    args = ap.parse_args(argv)
    unknown = [t for t in args.task_ids if t not in TASKS]
    if unknown:
        ap.error(f"unknown task id(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    for task_id in args.task_ids or list(TASKS):
        build_task(task_id, TASKS[task_id], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
