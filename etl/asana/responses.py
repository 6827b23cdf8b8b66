"""What an answer from Asana means, in one place: its JSON body, or the error it is
(retriable or not); and what a request that got no answer failed of.

Survives bodies that are not JSON (load balancer HTML pages, truncated bodies); no
message built here holds the token or a request's parameters.
"""

from __future__ import annotations

import email.utils
import json
import socket
import time
import urllib.parse
from typing import Any

import orjson
import requests

from etl.errors import (
    AuthError,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
)


def classify(response: requests.Response) -> dict[str, Any]:
    """Turn one HTTP answer into its JSON body or the right exception.

    Survives bodies that are not JSON (load balancer HTML pages, truncated bodies).

    Raises:
        RateLimitedError: 429.
        RetriableError: 5xx, or a 2xx whose body is not valid JSON.
        AuthError: 401, 402.
        RequestRejectedError: any other 4xx.
    """
    status = response.status_code
    try:
        body = decode_json(response.content)
    except (ValueError, requests.exceptions.RequestException):
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise RetriableError(f"HTTP {status} with a body that is not a JSON object", status)
        return body
    message, phrase = _asana_error(body)
    if status == 429:
        raise RateLimitedError(
            f"HTTP 429 rate limited: {message or 'Too Many Requests'}",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        raise RetriableError(
            f"HTTP {status}: {message or response.reason or 'server error'}", status, phrase
        )
    if status == 401:
        raise AuthError(
            f"Asana refused the token (HTTP 401: {message or 'Not Authorized'}); "
            "check ASANA_ACCESS_TOKEN or [asana] token_file",
            status,
        )
    if status == 402:
        raise AuthError(
            f"Asana answered HTTP 402 Payment Required ({message or 'no detail'}): time "
            "tracking needs a paid plan (Advanced or Enterprise) on this workspace",
            status,
        )
    raise RequestRejectedError(f"HTTP {status}: {message or response.reason or 'rejected'}", status)


def decode_json(content: bytes) -> Any:
    """JSON bytes → Python with orjson (twice as fast as the standard library on a page of
    entries), falling back to the standard library for what orjson refuses (1e400).

    Unlike the standard library, orjson reads an integer beyond 64 bits as a float; the
    fields we ask for hold none but `duration_minutes`, which such a value fails anyway.

    Raises:
        ValueError: not JSON.
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _asana_error(body: Any) -> tuple[str | None, str | None]:
    """Asana's `errors[0].message` and `.phrase`, if the body has them."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            message = first.get("message")
            phrase = first.get("phrase")
            return (
                str(message) if message is not None else None,
                str(phrase) if phrase is not None else None,
            )
    return None, None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


#: Retries of a host that refuses connections or has no address: a host that is down
#: fails its request in a couple of seconds, not after `max_retries` long backoffs.
MAX_UNREACHABLE_RETRIES = 2
#: The longest wait before one of those retries.
UNREACHABLE_BACKOFF_SECONDS = 1.0


class UnreachableError(RetriableError):
    """The API host refused the connection or could not be resolved."""


def transport_failure(exc: requests.exceptions.RequestException, *, too_slow: bool,
                      timeout: float, base_url: str) -> RetriableError:
    """The retriable error a transport failure is (`too_slow`: the watchdog cut it)."""
    if too_slow:
        return RetriableError(f"Asana's answer took longer than {timeout:g} s in total "
                              "([asana] timeout_seconds): the server sent it too slowly")
    if isinstance(exc, requests.exceptions.Timeout):
        return RetriableError(f"timed out after {timeout:g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        where = _host_and_port(base_url)
        if _refused_or_unknown(exc):
            return UnreachableError(f"cannot connect to {where} ({_root_cause(exc)}): is "
                                    "[asana] base_url right, and the host up?")
        return RetriableError(f"connection to {where} failed: {_root_cause(exc)}")
    return RetriableError(f"request failed: {exc.__class__.__name__}")


def _host_and_port(base_url: str) -> str:
    """'app.asana.com:443': where the requests go."""
    parts = urllib.parse.urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _refused_or_unknown(exc: BaseException) -> bool:
    """Whether a connection failed because nothing listens there or the name does not
    resolve (not a reset or a timeout, which a retry may get past)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionRefusedError, socket.gaierror)):
            return True
        if "NameResolutionError" in type(seen).__name__ or "Name or service not known" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _root_cause(exc: BaseException) -> str:
    """A short, token-free description of a transport failure."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc.__class__.__name__
