"""Dynamic sampling and GRPO advantages (pure Python, no torch).

Dynamic sampling (paper §4.2): keep a prompt's group of G rollouts iff the population standard deviation of
its rewards, sqrt(sum_i (r_i - mean)^2 / G), is strictly greater than ``eps``. The comparison is always
with a tolerance (never ``std == 0``): sums of floats like 0.1+0.2 leave ~1e-17 of noise in a flat group.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

DEFAULT_DS_EPS = 1e-4
"""Default dynamic-sampling threshold (the paper does not state its eps; see docs/paper-fidelity.md)."""


def group_std(rewards: Sequence[float]) -> float:
    """Population standard deviation (divide by G), computed stably."""
    n = len(rewards)
    if n == 0:
        return 0.0
    mean = math.fsum(rewards) / n
    return math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / n)


def keep_group(rewards: Sequence[float], eps: float = DEFAULT_DS_EPS) -> bool:
    return len(rewards) > 1 and group_std(rewards) > eps


@dataclass(frozen=True)
class FilterResult:
    kept: list[int]          # indices of kept groups, in input order
    dropped: list[int]
    kept_fraction: float


def filter_groups(groups: Sequence[Sequence[float]], eps: float = DEFAULT_DS_EPS) -> FilterResult:
    kept = [i for i, g in enumerate(groups) if keep_group(g, eps)]
    kept_set = set(kept)
    dropped = [i for i in range(len(groups)) if i not in kept_set]
    return FilterResult(kept, dropped, (len(kept) / len(groups)) if groups else 0.0)


def split_groups(rewards: Sequence[float], group_size: int) -> list[list[float]]:
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"group_size: {len(rewards)} rewards do not split into groups of {group_size}")
    return [list(rewards[i:i + group_size]) for i in range(0, len(rewards), group_size)]


def grpo_advantages(rewards: Sequence[float], group_size: int, *, scale: str = "group",
                    std_eps: float = 1e-4) -> list[float]:
    """Group-normalized advantages, one per rollout, rollouts laid out group after group.

    scale="group": (r - mean_g) / (std_g + std_eps) with the population std of the group (paper Eq. 1);
    scale="none":  r - mean_g (Dr. GRPO style). A flat group gets all-zero advantages either way.
    """
    if scale not in ("group", "none"):
        raise ValueError(f"scale: expected 'group' or 'none', got {scale!r}")
    out: list[float] = []
    for g in split_groups(rewards, group_size):
        mean = math.fsum(g) / len(g)
        std = group_std(g)
        for r in g:
            a = r - mean
            out.append(a / (std + std_eps) if scale == "group" else a)
    return out


# ---- dynamic sampling that generates what it keeps (issue #17 item 3) -------------------------------------------

DEFAULT_KEEP_RATE_PRIOR = 0.75
"""Keep rate assumed before any group has been scored (blended away as rounds are observed; docs/train.md)."""
DEFAULT_SKIP_FLAT_AFTER = 3
"""A prompt whose groups were flat on its last K visits is skipped by ``PromptOrder`` (0 = never skip)."""


def round_size(missing: int, keep_rate: float, cap: int) -> int:
    """Groups to generate so that ``missing`` kept groups are expected: ceil(missing / keep_rate), at least
    ``missing``, at most ``cap`` (and 0 when nothing is missing)."""
    if missing <= 0:
        return 0
    if cap < 1:
        raise ValueError(f"cap: must be >= 1, got {cap}")
    rate = min(max(float(keep_rate), 1e-6), 1.0)
    return max(1, min(cap, max(missing, math.ceil(missing / rate - 1e-9))))


class KeepRate:
    """Running estimate of the fraction of groups dynamic sampling keeps.

    rate = (kept + prior * prior_weight) / (generated + prior_weight), where kept and generated are sums over the
    rounds seen so far, each earlier round weighted down by ``decay`` per round (the policy drifts, so old rounds
    count less). Clamped to [floor, 1]."""

    def __init__(self, prior: float = DEFAULT_KEEP_RATE_PRIOR, prior_weight: float = 4.0, decay: float = 0.9,
                 floor: float = 0.02) -> None:
        if not 0.0 < prior <= 1.0:
            raise ValueError(f"prior: a keep rate must be in (0, 1], got {prior}")
        self.prior, self.prior_weight, self.decay, self.floor = float(prior), float(prior_weight), float(decay), floor
        self.kept = 0.0
        self.generated = 0.0

    @property
    def rate(self) -> float:
        r = (self.kept + self.prior * self.prior_weight) / (self.generated + self.prior_weight)
        return min(max(r, self.floor), 1.0)

    def update(self, kept: int, generated: int) -> None:
        if generated <= 0:
            return
        self.kept = self.kept * self.decay + kept
        self.generated = self.generated * self.decay + generated

    def state_dict(self) -> dict:
        return {"kept": self.kept, "generated": self.generated}

    def load_state_dict(self, state: dict) -> None:
        self.kept, self.generated = float(state["kept"]), float(state["generated"])


class PromptOrder:
    """Seeded epoch order over ``n`` prompts: epoch e visits every prompt once, in the permutation drawn from
    (seed, e). ``draw(k)`` returns the next k prompts (crossing into the next epoch when one runs out).

    A prompt whose groups were flat on its last ``skip_flat_after`` visits (``record``) is passed over and counted
    in ``skipped``; when a whole epoch's worth of prompts in a row is skippable, the flat history is cleared
    (``resets``) rather than looping forever. The state (epoch, position, history, counters) is a small dict
    (``state_dict``) saved with checkpoints, so a resumed run continues the same order."""

    def __init__(self, n: int, seed: int = 0, skip_flat_after: int = DEFAULT_SKIP_FLAT_AFTER) -> None:
        if n < 1:
            raise ValueError("PromptOrder: no prompts")
        if skip_flat_after < 0:
            raise ValueError(f"skip_flat_after: must be >= 0, got {skip_flat_after}")
        self.n, self.seed, self.skip_flat_after = n, int(seed), skip_flat_after
        self.epoch = 0
        self.pos = 0
        self.flat_streak: dict[int, int] = {}
        self.skipped = 0
        self.resets = 0
        self._perm: list[int] | None = None

    def permutation(self, epoch: int) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def skippable(self, i: int) -> bool:
        return self.skip_flat_after > 0 and self.flat_streak.get(i, 0) >= self.skip_flat_after

    def _next(self) -> int:
        if self._perm is None:
            self._perm = self.permutation(self.epoch)
        if self.pos >= self.n:
            self.epoch += 1
            self.pos = 0
            self._perm = self.permutation(self.epoch)
        i = self._perm[self.pos]
        self.pos += 1
        return i

    def draw(self, k: int) -> list[int]:
        out: list[int] = []
        passed = 0
        while len(out) < k:
            i = self._next()
            if self.skippable(i):
                self.skipped += 1
                passed += 1
                if passed >= self.n:       # every prompt is flat K times in a row: start the history afresh
                    self.flat_streak.clear()
                    self.resets += 1
                    passed = 0
                continue
            passed = 0
            out.append(i)
        return out

    def record(self, i: int, flat: bool) -> None:
        if flat:
            self.flat_streak[i] = self.flat_streak.get(i, 0) + 1
        else:
            self.flat_streak.pop(i, None)

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "skip_flat_after": self.skip_flat_after, "epoch": self.epoch,
                "pos": self.pos, "flat_streak": sorted(self.flat_streak.items()), "skipped": self.skipped,
                "resets": self.resets}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n or int(state["seed"]) != self.seed:
            raise ValueError(f"prompt order state is for {state['n']} prompts / seed {state['seed']}, not "
                             f"{self.n} / {self.seed}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.flat_streak = {int(i): int(c) for i, c in state["flat_streak"]}
        self.skipped, self.resets = int(state["skipped"]), int(state["resets"])
        self._perm = None
