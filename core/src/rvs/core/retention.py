"""How long media are kept: a default and per-source limits (the longest matching source prefix
wins), in days; 0 keeps them forever."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DAY_MS = 86_400_000


@dataclass(frozen=True)
class RetentionRules:
    default_days: float = 0.0
    by_prefix: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for prefix, days in {"": self.default_days, **self.by_prefix}.items():
            if not days >= 0:  # NaN too
                raise ValueError(f"retention for source prefix {prefix!r} is {days} days; it must be >= 0 (0: forever)")

    @property
    def keeps_all(self) -> bool:
        return not self.default_days and not any(self.by_prefix.values())

    def days_for(self, source: str) -> float:
        """The limit of a source: its longest matching prefix's, else the default (0: forever)."""
        matching = [p for p in self.by_prefix if source.startswith(p)]
        return self.by_prefix[max(matching, key=len)] if matching else self.default_days

    def limit_sql(self, source_column: str = "source") -> tuple[str, list[object]]:
        """An SQL expression of a row's limit in ms (NULL: kept forever), longest prefix first, with
        its parameters; prefixes are compared exactly (no LIKE wildcards)."""
        cases, args = [], []
        for prefix in sorted(self.by_prefix, key=len, reverse=True):
            cases.append(f"WHEN substr({source_column}, 1, ?) = ? THEN ?")
            args += [len(prefix), prefix, _ms(self.by_prefix[prefix])]
        args.append(_ms(self.default_days))
        return (f"(CASE {' '.join(cases)} ELSE ? END)" if cases else "?"), args


def _ms(days: float) -> int | None:
    return round(days * DAY_MS) if days else None
