"""The normalized trajectory every reader produces and every consumer (step builder, replay) reads.

Data flow: native trajectory file --(environments.trajectories readers)--> Trajectory
           --(step builder)--> StepRecords;  Trajectory --(environments.replay)--> regenerated observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrajectoryStep:
    action: str                      # canonical action text (swe_srl.core.toolcall canonical XML)
    tool: str | None                 # tool name of the action ("bash", "str_replace_editor", "open", ...)
    thought: str = ""                # the expert's reasoning text for this step (never a training target)
    observation: str | None = None   # recorded observation after the action, if any
    raw_action: str = ""             # the action exactly as recorded in the source file
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trajectory:
    instance_id: str
    issue: str                       # problem statement / task text
    steps: list[TrajectoryStep]
    source: str                      # path of the file it was read from
    format: str                      # reader name, e.g. "sweagent_0x", "sweagent_1x", "minisweagent", ...
    repo: str | None = None          # "owner/name" if known
    base_commit: str | None = None
    patch: str | None = None         # final submitted patch, if recorded
    resolved: bool | None = None     # whether the patch resolved the task, if known
    system_prompt: str | None = None # the agent's original system prompt, if recorded (informational)
    #: reader extras; dataset rows add: row, dataset, split, dataset_file, success_field, has_success_column, model,
    #: excluded_actions ({kind: n} non-actions), tools_available / tool_schemas (a ``tools`` column),
    #: documented_commands (SWE-agent commands beyond the ACI)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_actions(self) -> int:
        return len(self.steps)
