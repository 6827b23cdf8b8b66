"""Asana's opaque pagination offsets, as the simulated Asana signs them: each stands for a
position in one query's results, is valid for that query only, and can expire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson


def query_key(params: dict[str, str], endpoint: str = "") -> str:
    """What an offset is bound to: the endpoint and its query, less the page (`offset`,
    `limit`)."""
    bound = sorted((k, v) for k, v in params.items() if k not in ("offset", "limit", "opt_pretty"))
    return hashlib.sha256(orjson.dumps([endpoint, bound])).hexdigest()[:16]


class Offsets:
    """Signs offsets with a secret of its own, and reads them back."""

    def __init__(self) -> None:
        self._secret = hashlib.sha256(f"{id(self)}{time.time()}".encode()).digest()

    def make(self, params: dict[str, str], position: int, endpoint: str = "") -> str:
        payload = orjson.dumps([position, query_key(params, endpoint), time.time()])
        sig = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(payload + sig).decode().rstrip("=")

    def read(self, params: dict[str, str], ttl: float | None, endpoint: str = "") -> int | None:
        """The position `params["offset"]` stands for, or None if it is forged, of
        another query or endpoint, or older than `ttl` seconds."""
        token = params["offset"]
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload, sig = raw[:-12], raw[-12:]
            if not hmac.compare_digest(sig, hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]):
                return None
            position, key, issued = orjson.loads(payload)
        except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
            return None
        if key != query_key(params, endpoint):
            return None
        if ttl is not None and time.time() - issued > ttl:
            return None
        return int(position)
