"""The comparisons a rollout step is judged by: pure functions of counts, no I/O.

- Rates (errors per request, wrong rows per labelled row) are compared with a one-sided
  two-proportion z-test (pooled variance): the step fails when the new version's rate is higher
  than the current version's with a p-value below the spec's significance level ``alpha``. A
  test with fewer than ``min_samples`` on either side is inconclusive and does not fail a step
  (``RolloutSpec.min_requests`` / ``min_labels`` make a step wait for its samples instead).
- Latency: the new version's p99 may exceed the current one's by the relative
  ``latency_tolerance`` plus an absolute ``latency_slack_ms`` (p99 has no cheap exact test;
  the slack keeps sub-millisecond jitter from failing a step).

A rollout looks at the numbers once per step, on the step's own window of the new version's
requests, so each step is one test at level ``alpha`` (not a sequential test over every tick).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class Check:
    """One comparison of the new version (``new``) with the current one (``cur``)."""

    name: str
    verdict: str  # pass, fail or inconclusive
    new: float | None
    cur: float | None
    new_n: int
    cur_n: int
    detail: str
    p_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "new": self.new,
            "cur": self.cur,
            "new_n": self.new_n,
            "cur_n": self.cur_n,
            "p_value": self.p_value,
            "detail": self.detail,
        }


def worse_rate_test(
    name: str, new_bad: int, new_n: int, cur_bad: int, cur_n: int, alpha: float, min_samples: int
) -> Check:
    """Whether the new version's rate of bad outcomes (``new_bad`` of ``new_n``) is
    significantly higher than the current one's: a one-sided two-proportion z-test."""
    for bad, n in ((new_bad, new_n), (cur_bad, cur_n)):
        if not 0 <= bad <= n:
            raise ValueError(f"{name}: {bad} bad outcomes of {n} is not a proportion")
    new_rate = new_bad / new_n if new_n else None
    cur_rate = cur_bad / cur_n if cur_n else None
    if new_n < min_samples or cur_n < min_samples:
        detail = f"too few samples (new {new_n}, current {cur_n}; at least {min_samples} each)"
        return Check(name, INCONCLUSIVE, new_rate, cur_rate, new_n, cur_n, detail)
    assert new_rate is not None and cur_rate is not None
    pooled = (new_bad + cur_bad) / (new_n + cur_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / new_n + 1 / cur_n))
    z = (new_rate - cur_rate) / se if se > 0 else 0.0
    p_value = normal_sf(z)
    verdict = FAIL if p_value < alpha else PASS
    relation = "higher than" if verdict == FAIL else "not significantly higher than"
    detail = (
        f"{new_rate:.4f} ({new_bad}/{new_n}) {relation} {cur_rate:.4f} ({cur_bad}/{cur_n}): "
        f"z={z:.2f}, p={p_value:.4g}, alpha={alpha:g}"
    )
    return Check(name, verdict, new_rate, cur_rate, new_n, cur_n, detail, round(p_value, 6))


def latency_check(
    new_p99: float | None,
    new_n: int,
    cur_p99: float | None,
    cur_n: int,
    tolerance: float,
    slack_ms: float,
    min_samples: int,
) -> Check:
    """Whether the new version's p99 latency stays within ``cur * (1 + tolerance) + slack_ms``."""
    if new_p99 is None or cur_p99 is None or new_n < min_samples or cur_n < min_samples:
        detail = f"too few samples (new {new_n}, current {cur_n}; at least {min_samples} each)"
        return Check("p99_latency_ms", INCONCLUSIVE, new_p99, cur_p99, new_n, cur_n, detail)
    limit = cur_p99 * (1 + tolerance) + slack_ms
    verdict = PASS if new_p99 <= limit else FAIL
    relation = "within" if verdict == PASS else "above"
    detail = (
        f"{new_p99:.2f} ms {relation} the limit {limit:.2f} ms "
        f"({cur_p99:.2f} ms x {1 + tolerance:g} + {slack_ms:g} ms)"
    )
    return Check("p99_latency_ms", verdict, round(new_p99, 3), round(cur_p99, 3), new_n, cur_n,
                 detail)  # fmt: skip


def _rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def count_correct(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> tuple[int, int]:
    """(labelled rows, correct rows) of predictions given as (outputs JSON, label JSON): a
    request's label holds one value per row (a single value for a one-row request)."""
    labelled = correct = 0
    for outputs_json, label_json in pairs:
        try:
            outputs = _rows(json.loads(outputs_json)) if outputs_json else []
            truth = _rows(json.loads(label_json))
        except ValueError:
            continue
        for out, lab in zip(outputs, truth, strict=False):
            labelled += 1
            correct += int(out == lab or str(out) == str(lab))
    return labelled, correct
