"""Option types of the commands: a calendar day, a gid."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click


class Day(click.ParamType):
    """A calendar day as YYYY-MM-DD; an impossible one (2026-02-30) is said to be so,
    not to be in the wrong format."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> dt.date:
        if isinstance(value, dt.date):
            return value
        text = str(value).strip()
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            self.fail(f"{text!r} is not a date as YYYY-MM-DD (e.g. 2026-03-31)", param, ctx)
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            self.fail(f"no such date: {text}", param, ctx)


def gids(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not value.isascii() or not value.isdigit():
            raise click.BadParameter(f"{value!r} is not a gid (a string of digits)")
    return values
