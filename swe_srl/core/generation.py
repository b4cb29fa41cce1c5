"""What a generation backend looks like, without any backend: sampling parameters and the Generator protocol.

The backends themselves (transformers, vLLM) live in ``swe_srl.generation`` (top layer, torch). Middle-layer code
(math evaluation, solution rewriting) takes a ``Generator`` from its caller and never builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

Messages = list[dict[str, str]]
Prompt = Messages | str


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0      # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


class Generator(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]: ...
