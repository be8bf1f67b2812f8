"""Prometheus text exposition, gathered from the parts on each scrape.

A part that has figures implements ``metrics() -> Iterable[Sample]``; this module
renders them (format 0.0.4). Label values are escaped; secrets never go in labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    help: str = ""
    type: str = "gauge"  # gauge | counter


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(samples: Iterable[Sample], prefix: str = "gateway_") -> str:
    """Group samples by metric name; HELP/TYPE once per name."""
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(prefix + s.name, []).append(s)
    lines: list[str] = []
    for name, group in by_name.items():
        first = group[0]
        if first.help:
            lines.append(f"# HELP {name} {first.help}")
        lines.append(f"# TYPE {name} {first.type}")
        for s in group:
            if s.labels:
                labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(s.labels.items()))
                lines.append(f"{name}{{{labels}}} {_number(s.value)}")
            else:
                lines.append(f"{name} {_number(s.value)}")
    return "\n".join(lines) + "\n"
