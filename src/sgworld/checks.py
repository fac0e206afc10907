"""One reported number against its reference: the record behind every study's and pipeline's checks."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Check:
    """One reported number against its reference, for the report: ``ok`` says whether ``value`` is
    within ``tolerance`` (a short human-readable rule, e.g. ``"|z| < 5"``) of ``reference``; ``None``
    when the number has no pass/fail rule (shown for information)."""

    name: str
    value: float | None
    reference: float | None = None
    tolerance: str = ""
    ok: bool | None = None
    note: str = ""
