"""The Asana token: read from the environment or a file, checked, and kept as a `Secret`
that no repr, log line or exception message can show.

The token never lives in the config file: it comes from `ASANA_ACCESS_TOKEN` or from
the file named by `[asana] token_file`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

ENV_TOKEN = "ASANA_ACCESS_TOKEN"

#: Reports a problem with a key of the config: (key, what is wrong).
Problem = Callable[[str, str], None]


class Secret:
    """A string that shows as `***` everywhere except where `reveal()` is called."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)



def read_token(token_file: str | None, env: Mapping[str, str], problem: Problem) -> Secret | None:
    """The token, from the environment or else the token file, with the whitespace at its
    ends stripped (a file's trailing newline is normal); None, after a problem, when it
    cannot be sent. No problem quotes it."""
    if env.get(ENV_TOKEN):
        return _checked(env[ENV_TOKEN].strip(), ENV_TOKEN, "the environment variable", problem)
    if token_file is None:
        return None
    path = Path(token_file).expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem("[asana] token_file", f"cannot read {path}: {exc.__class__.__name__}")
        return None
    return _checked(value, "[asana] token_file", str(path), problem)


def _checked(value: str, key: str, origin: str, problem: Problem) -> Secret | None:
    """`value` as the token, or None after a problem saying what is wrong with it."""
    wrong = _token_problem(value)
    if wrong:
        problem(key, f"the token in {origin} {wrong}")
        return None
    return Secret(value)


def _token_problem(token: str) -> str | None:
    """What makes a token (ends stripped) unusable, or None: it goes in an HTTP header, so
    one word of printable ASCII. A line break in it was sent as a header that requests
    refuses, and retried as if Asana had failed."""
    if not token:
        return "is empty"
    if any(char in "\r\n" for char in token):
        return "holds a line break inside it (more than one line?)"
    if any(char.isspace() for char in token):
        return "holds whitespace inside it"
    if not token.isascii():
        return "holds a character that is not ASCII"
    if not token.isprintable():
        return "holds a control character"
    return None
