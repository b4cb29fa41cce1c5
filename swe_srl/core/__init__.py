"""The SRL core: step records, completion format, canonical tool calls, the step reward, dynamic sampling, the
Task seam and the shared crash-safe I/O (append log, resume guard, hashing, versions).

Importable without torch (standard library + optional rapidfuzz/cydifflib for similarity backends).
"""

from .io import AppendLog, OutputLock, OutputLocked, ResumeGuard, ResumeMismatch, file_sha256, versions
from .format import VIOLATIONS, ParsedCompletion, parse_completion
from .reward import FORMAT_PENALTY, RewardResult, score_batch, score_completion, similarity, srl_reward, srl_rewards
from .sampling import DEFAULT_DS_EPS, filter_groups, group_std, grpo_advantages, keep_group
from .schema import SCHEMA_VERSION, StepRecord, StepRecordError, iter_steps, read_steps, validate_record, write_steps
from .store import StepStore, length_stats, write_json_atomic
from .task import RowOptions, Task, TaskError
from .toolcall import ToolCall, ToolCallError, canonicalize_action, from_openai, from_shell, parse_single_tool_call, parse_tool_calls

__all__ = [
    "AppendLog", "OutputLock", "OutputLocked", "ResumeGuard", "ResumeMismatch", "file_sha256", "versions", "RowOptions", "Task", "TaskError",
    "VIOLATIONS", "ParsedCompletion", "parse_completion", "FORMAT_PENALTY", "RewardResult", "score_batch",
    "score_completion", "similarity", "srl_reward", "srl_rewards", "DEFAULT_DS_EPS", "filter_groups", "group_std",
    "grpo_advantages", "keep_group", "SCHEMA_VERSION", "StepRecord", "StepRecordError", "iter_steps", "read_steps",
    "validate_record", "write_steps", "StepStore", "length_stats", "write_json_atomic", "ToolCall", "ToolCallError",
    "canonicalize_action", "from_openai", "from_shell", "parse_single_tool_call", "parse_tool_calls",
]
