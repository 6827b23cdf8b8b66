"""Counted nouns for messages a person reads: "1 scope", "2 scopes", "1 entry"."""

from __future__ import annotations

_IRREGULAR = {"entry": "entries"}


def count(n: int, noun: str) -> str:
    """`n` and `noun`, plural unless `n` is 1."""
    return f"{n} {noun if n == 1 else _IRREGULAR.get(noun, noun + 's')}"
