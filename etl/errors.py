"""One exception tree for the whole tool, and the exit codes of the CONTRACT.

Only `etl.cli` turns these into exit codes; library code raises, never exits.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, fixed by CONTRACT.md."""

    OK = 0
    SCOPE_FAILED = 1
    USAGE = 2
    ASANA_REFUSED = 3
    LOCKED = 4
    DATABASE_FAILED = 5


class EtlError(Exception):
    """Root of every error the tool raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(EtlError):
    """The configuration (file, environment, options) is unusable."""

    exit_code = ExitCode.USAGE


class DatabaseError(EtlError):
    """The database cannot be reached or used (the message never holds a password)."""

    exit_code = ExitCode.USAGE


class DatabaseFailed(DatabaseError):
    """The database failed during the run (connection lost for good, disk or quota full,
    server restarted): what committed stays. The message names the database (password
    masked) and the server's reason, never SQL, bound values or entry contents."""

    exit_code = ExitCode.DATABASE_FAILED


class FetcherDied(EtlError):
    """The fetcher process ended without being asked to (killed, out of memory): the
    run's unfinished scopes fail."""

    exit_code = ExitCode.SCOPE_FAILED


class AsanaError(EtlError):
    """Any failure talking to Asana.

    Attributes:
        status: HTTP status, or None for transport failures.
        message: Asana's own error message when it sent one.
        phrase: Asana's incident phrase (on 500s), to quote to Asana support.
    """

    exit_code = ExitCode.SCOPE_FAILED

    def __init__(self, message: str, status: int | None = None, phrase: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.phrase = phrase


class RetriableError(AsanaError):
    """A failure worth another try: 5xx, connection trouble, timeout, truncated body."""


class RateLimitedError(RetriableError):
    """429: Asana asks us to wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message, status=429)
        self.retry_after = retry_after


class RequestRejectedError(AsanaError):
    """400/403/404 (and other 4xx): this request will never succeed as sent.

    Fails the scope it belongs to, not the run.
    """


class AuthError(AsanaError):
    """401 (token refused) or 402 (plan without time tracking): fails the whole run."""

    exit_code = ExitCode.ASANA_REFUSED


class OffsetExpiredError(RequestRejectedError):
    """400 naming `offset`: the listing's continuation token expired; restart the listing."""


class LockError(EtlError):
    """Another run holds one of this run's scopes (or took it over after this run's lock
    connection was lost)."""

    exit_code = ExitCode.LOCKED


class Interrupted(BaseException):
    """SIGTERM/SIGINT: stop at once, roll back the page in hand, record the run as failed.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """

    def __init__(self, signal_name: str, signal_number: int):
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name
        self.exit_code = 128 + signal_number
