"""ToolRuntime: executes canonical ToolCalls (swe_srl.core.toolcall) in a Sandbox and returns observation text."""

from __future__ import annotations

import posixpath
import shlex
import uuid

from swe_srl.core.toolcall import ToolCall

from ..sandbox.base import SandboxError
from .aci import ACI
from .editor import StrReplaceEditor, file_error
from swe_srl.core.errors import SweSrlError

ACI_TOOLS = ("open", "goto", "scroll_up", "scroll_down", "search_dir", "search_file", "find_file", "create", "edit")
SUPPORTED_TOOLS = ("bash", "str_replace_editor", "submit", "finish", "think") + ACI_TOOLS
BASH_STYLES = ("sweagent", "sweagent0", "mini")


class UnsupportedTool(SweSrlError, ValueError):
    """The action's tool is not one we can execute (e.g. CodeR's `plan`/`succeed`, rover_search_*)."""


class PathEscapeError(SweSrlError, ValueError):
    pass


class ToolRuntime:
    """Stateful tool executor for one episode.

    bash_style: "sweagent" (SWE-agent 1.x: raw output, a fixed sentence when empty, no exit code),
    "sweagent0" (SWE-agent 0.x: raw output, empty stays empty), "mini" (mini-swe-agent:
    ``<returncode>N</returncode>\\n<output>\\n...</output>``). The bash tool keeps the working directory across
    calls (`cd` persists); environment variables do not persist.
    """

    def __init__(self, sandbox, *, bash_style: str = "sweagent", timeout: float = 60):
        if bash_style not in BASH_STYLES:
            raise ValueError(f"bash_style must be one of {BASH_STYLES}")
        self.sandbox = sandbox
        self.root = posixpath.normpath(sandbox.workdir)
        self.cwd = self.root
        self.bash_style = bash_style
        self.timeout = timeout
        self.editor = StrReplaceEditor(self)
        self.aci = ACI(self)
        self.submitted: str | None = None

    # -- paths -------------------------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """Absolute, normalized path inside the repo root; raises PathEscapeError otherwise (a lexical check, plus
        the sandbox's own ``confine(path)`` where it has one: LocalSandbox resolves symlinks on the host)."""
        p = posixpath.normpath(path if path.startswith("/") else posixpath.join(self.cwd, path))
        if p != self.root and not p.startswith(self.root.rstrip("/") + "/"):
            raise PathEscapeError(f"Error: access to {path} refused: the path is outside the repository root "
                                  f"{self.root}.")
        confine = getattr(self.sandbox, "confine", None)    # LocalSandbox: real path (symlinks) must stay inside
        if confine is not None:
            try:
                confine(p)
            except PermissionError as e:
                raise PathEscapeError(f"Error: {e}.") from None
        return p

    # -- dispatch ----------------------------------------------------------------------------------------------
    def execute(self, call: ToolCall) -> str:
        name = call.name
        args = dict(call.arguments)
        if name not in SUPPORTED_TOOLS:
            raise UnsupportedTool(name)
        try:
            if name == "bash":
                return self.bash(args.get("command", ""))
            if name == "str_replace_editor":
                return self.editor(args)
            if name in ("submit", "finish"):
                return self.submit()
            if name == "think":
                return "Your thought has been logged."
            try:
                return getattr(self.aci, name)(args)
            except (OSError, SandboxError) as e:      # a file operation failed: an observation, never a crash
                return file_error(name, args.get("path") or args.get("filename") or "", e)
        except PathEscapeError as e:
            return str(e)

    def bash(self, command: str) -> str:
        marker = f"__SWESRL_CWD_{uuid.uuid4().hex[:8]}__"
        script = (f"cd {shlex.quote(self.cwd)} 2>/dev/null || cd {shlex.quote(self.root)}\n{command}\n"
                  f"__rc=$?; printf '\\n{marker}%s' \"$(pwd)\"; exit $__rc")
        res = self.sandbox.run(script, timeout=self.timeout, workdir=self.cwd)
        return self._format(command, self._take_cwd(res.output, marker), res.exit_code, res.timed_out)

    def _take_cwd(self, out: str, marker: str) -> str:
        """The command's output without the trailing ``marker + pwd`` line; the working directory it names becomes
        ``self.cwd``."""
        idx = out.rfind(marker)
        if idx >= 0:
            new_cwd = out[idx + len(marker):].strip()
            out = out[:idx]
            out = out[:-1] if out.endswith("\n") else out       # the newline printed before the marker
            if new_cwd.startswith("/"):
                self.cwd = new_cwd
        return out

    def _format(self, command: str, out: str, rc: int, timed_out: bool) -> str:
        """The observation of a bash command in this runtime's ``bash_style``."""
        if timed_out:
            msg = (f"The command '{command}' was cancelled because it took more than {self.timeout:g} seconds. "
                   "Please try a different command that completes more quickly.")
            if self.bash_style == "mini":
                return f"<returncode>-1</returncode>\n<output>\n{out}</output>\n{msg}"
            return msg
        if self.bash_style == "mini":
            return f"<returncode>{rc}</returncode>\n<output>\n{out}</output>"
        if self.bash_style == "sweagent0":
            return out
        out = out.rstrip("\n")
        return out if out.strip() else "Your command ran successfully and did not produce any output."

    def submit(self) -> str:
        patch = self.sandbox.diff()
        self.submitted = patch
        return ("\n" + patch) if self.bash_style == "sweagent0" else patch
