"""`str_replace_editor` with the SWE-agent 1.x / OpenHands (Anthropic text-editor) semantics and messages.

Deviation: directory listings are sorted (the original prints `find` order, which depends on the file system).
"""

from __future__ import annotations

import json
import shlex

from ..sandbox.base import SandboxError
from swe_srl.core.errors import SweSrlError

SNIPPET_LINES = 4


def numbered(text: str, init_line: int = 1) -> str:
    text = text.expandtabs()
    return "\n".join(f"{i + init_line:6}\t{line}" for i, line in enumerate(text.split("\n")))


def make_output(text: str, descriptor: str, init_line: int = 1) -> str:
    return f"Here's the result of running `cat -n` on {descriptor}:\n" + numbered(text, init_line) + "\n"


class EditorError(SweSrlError):
    pass


def file_error(command: str, path: str, err: BaseException) -> str:
    """The observation for a file operation that failed in the sandbox (OSError / SandboxError): one line."""
    if isinstance(err, PermissionError) and "refused" in str(err):
        return f"Error: {err}."
    detail = str(err).strip().splitlines()[-1][-300:] if str(err).strip() else type(err).__name__
    return f"Error: `{command}` on {path} failed: {detail}"


def _view_range(raw: str | None) -> list[int] | None:
    if raw is None or raw == "":
        return None
    try:
        val = json.loads(raw)
    except json.JSONDecodeError:
        val = [int(x) for x in raw.replace(",", " ").strip("[] ").split()] if raw.strip("[] ") else None
    if not (isinstance(val, list) and len(val) == 2 and all(isinstance(x, int) for x in val)):
        raise EditorError("Invalid `view_range`. It should be a list of two integers.")
    return val


class StrReplaceEditor:
    def __init__(self, runtime):
        self.rt = runtime
        self.history: dict[str, list[str | None]] = {}

    @property
    def sb(self):
        return self.rt.sandbox

    def __call__(self, args: dict[str, str]) -> str:
        try:
            return self._dispatch(args).rstrip("\n")
        except EditorError as e:
            return str(e)
        except (OSError, SandboxError) as e:      # e.g. create through a dangling directory symlink
            self._cache = None
            return file_error(args.get("command", ""), args.get("path", ""), e)

    def _exists(self, path: str) -> str | None:
        """'file', 'dir' or None."""
        res = self.sb.run(f"if [ -d {shlex.quote(path)} ]; then echo dir; elif [ -e {shlex.quote(path)} ]; "
                          "then echo file; fi", timeout=30)
        out = res.output.strip()
        return out or None

    def _kind_fast(self, path: str) -> str | None:
        """Existence check by reading (caches the text for the command that follows): one exec instead of two."""
        self._cache = None
        try:
            self._cache = (path, self.sb.read_file(path))
            return "file"
        except IsADirectoryError:
            return "dir"
        except FileNotFoundError:
            return self._exists(path)

    def _read(self, path: str) -> str:
        cache, self._cache = getattr(self, "_cache", None), None
        if cache and cache[0] == path:
            return cache[1]
        return self.sb.read_file(path)

    def _dispatch(self, a: dict[str, str]) -> str:
        cmd = a.get("command", "")
        path = a.get("path", "")
        allowed = ("view", "create", "str_replace", "insert", "undo_edit")
        if cmd not in allowed:
            raise EditorError(f"Unrecognized command {cmd}. The allowed commands for the str_replace_editor tool "
                              f"are: {', '.join(allowed)}")
        if not path.startswith("/"):
            suggested = "/" + path
            raise EditorError(f"The path {path} is not an absolute path, it should start with `/`. "
                              f"Maybe you meant {suggested}?")
        path = self.rt.resolve(path)
        kind = self._kind_fast(path) if cmd in ("view", "str_replace", "insert") else self._exists(path)
        if kind is None and cmd != "create":
            raise EditorError(f"The path {path} does not exist. Please provide a valid path.")
        if kind is not None and cmd == "create":
            raise EditorError(f"File already exists at: {path}. Cannot overwrite files using command `create`.")
        if kind == "dir" and cmd != "view":
            raise EditorError(f"The path {path} is a directory and only the `view` command can be used on "
                              "directories")
        if cmd == "view":
            return self.view(path, kind, _view_range(a.get("view_range")))
        if cmd == "create":
            if "file_text" not in a:
                raise EditorError("Parameter `file_text` is required for command: create")
            self.sb.write_file(path, a["file_text"])
            self.history.setdefault(path, []).append(None)   # undoing a create removes the file
            return f"File created successfully at: {path}"
        if cmd == "str_replace":
            if "old_str" not in a:
                raise EditorError("Parameter `old_str` is required for command: str_replace")
            return self.str_replace(path, a["old_str"], a.get("new_str", ""))
        if cmd == "insert":
            if "insert_line" not in a:
                raise EditorError("Parameter `insert_line` is required for command: insert")
            if "new_str" not in a:
                raise EditorError("Parameter `new_str` is required for command: insert")
            return self.insert(path, a["insert_line"], a["new_str"])
        return self.undo(path)

    def view(self, path: str, kind: str, rng: list[int] | None) -> str:
        if kind == "dir":
            if rng is not None:
                raise EditorError("The `view_range` parameter is not allowed when `path` points to a directory.")
            res = self.sb.run(f"find {shlex.quote(path)} -maxdepth 2 -not -path '*/.*' | LC_ALL=C sort", timeout=60)
            return (f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n"
                    f"{res.output}\n")
        text = self._read(path)
        init = 1
        if rng is not None:
            lines = text.split("\n")
            n = len(lines)
            lo, hi = rng
            if lo < 1 or lo > n:
                raise EditorError(f"Invalid `view_range`: {rng}. Its first element `{lo}` should be within the "
                                  f"range of lines of the file: {[1, n]}")
            if hi > n:
                raise EditorError(f"Invalid `view_range`: {rng}. Its second element `{hi}` should be smaller than "
                                  f"the number of lines in the file: `{n}`")
            if hi != -1 and hi < lo:
                raise EditorError(f"Invalid `view_range`: {rng}. Its second element `{hi}` should be larger or "
                                  f"equal than its first `{lo}`")
            text = "\n".join(lines[lo - 1:] if hi == -1 else lines[lo - 1:hi])
            init = lo
        return make_output(text, path, init)

    def str_replace(self, path: str, old: str, new: str) -> str:
        content = self._read(path).expandtabs()
        old, new = old.expandtabs(), new.expandtabs()
        count = content.count(old)
        if count == 0:
            raise EditorError(f"No replacement was performed, old_str `{old}` did not appear verbatim in {path}.")
        if count > 1:
            lines = [i + 1 for i, line in enumerate(content.split("\n")) if old in line]
            raise EditorError(f"No replacement was performed. Multiple occurrences of old_str `{old}` in lines "
                              f"{lines}. Please ensure it is unique")
        new_content = content.replace(old, new)
        self.sb.write_file(path, new_content)
        self.history.setdefault(path, []).append(content)
        line = content.split(old)[0].count("\n")
        start = max(0, line - SNIPPET_LINES)
        end = line + SNIPPET_LINES + new.count("\n")
        snippet = "\n".join(new_content.split("\n")[start:end + 1])
        return (f"The file {path} has been edited. " + make_output(snippet, f"a snippet of {path}", start + 1)
                + "Review the changes and make sure they are as expected. Edit the file again if necessary.")

    def insert(self, path: str, raw_line: str, new: str) -> str:
        content = self._read(path).expandtabs()
        new = new.expandtabs()
        lines = content.split("\n")
        n = len(lines)
        try:
            at = int(raw_line)
        except ValueError:
            at = -1
        if at < 0 or at > n:
            raise EditorError(f"Invalid `insert_line` parameter: {raw_line}. It should be within the range of lines "
                              f"of the file: {[0, n]}")
        new_lines = new.split("\n")
        result = lines[:at] + new_lines + lines[at:]
        snippet = lines[max(0, at - SNIPPET_LINES):at] + new_lines + lines[at:at + SNIPPET_LINES]
        self.sb.write_file(path, "\n".join(result))
        self.history.setdefault(path, []).append(content)
        return ("The file {p} has been edited. ".format(p=path)
                + make_output("\n".join(snippet), "a snippet of the edited file", max(1, at - SNIPPET_LINES + 1))
                + "Review the changes and make sure they are as expected (correct indentation, no duplicate lines, "
                  "etc). Edit the file again if necessary.")

    def undo(self, path: str) -> str:
        hist = self.history.get(path)
        if not hist:
            raise EditorError(f"No edit history found for {path}.")
        old = hist.pop()
        if old is None:   # undo of a create: remove the file again
            self.sb.run(f"rm -f {shlex.quote(path)}", timeout=30)
            return f"Last edit to {path} undone successfully."
        self.sb.write_file(path, old)
        return f"Last edit to {path} undone successfully. " + make_output(old, path)
