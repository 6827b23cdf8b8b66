"""How the simulated Asana answers one request: authentication, faults, then the
endpoint's real answer, with Asana's error bodies.
"""

from __future__ import annotations

import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from etl.simulator.faults import OFFSET_FAULTS, Fault
from etl.simulator.responses import API, Answer, error, json_answer, next_page
from etl.simulator.routes import answer

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator, _Server

TOO_MANY = "You have made too many requests recently. Please, be chill."


class _Reset(Exception):
    """Drop the connection without an answer."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        sim = self.server.simulator
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/_simulator/stats":  # for benchmarks: not part of Asana's API
            self._send(*json_answer(200, sim.stats()))
            return
        self._recorded_as: str | None = None
        self._drip: Fault | None = None  # a "drip" or "drip_body" fault to answer with
        retry_after, in_flight = sim._admit()
        if retry_after is not None:
            status, body, headers = error(429, TOO_MANY)
            headers["Retry-After"] = f"{retry_after:.3g}"
            sim._record("GET", path, params, status)
            self._send(status, body, headers)
            return
        try:
            if sim.latency:
                time.sleep(sim.latency)
            status, body, headers = self._answer(sim, path, params)
        except _Reset:
            sim._record("GET", path, params, "reset")
            self._reset()
            return
        finally:
            sim._release()
        sim._record("GET", path, params, self._recorded_as or status, in_flight)
        if self._drip is not None:
            self._send_dripping(status, body, headers)
        else:
            self._send(status, body, headers)

    def _answer(self, sim: AsanaSimulator, path: str, params: dict[str, str]) -> Answer:
        if self.headers.get("Authorization") != f"Bearer {sim.token}":
            return error(401, "Not Authorized")
        fault = sim._take_fault(path, params)
        if fault is not None:
            return self._fault(sim, fault, path, params)
        if sim.before_answer is not None:
            sim.before_answer(path, params)
        if sim.payment_required:
            return error(402, "Time tracking is only available on Asana's Advanced and Enterprise plans.")
        return answer(sim, path, params)

    def _fault(self, sim: AsanaSimulator, fault: Fault, path: str, params: dict[str, str]
               ) -> Answer:
        if fault.kind == "reset":
            raise _Reset
        if fault.kind == "truncate":
            self._recorded_as = "truncate"
            status, body, headers = answer(sim, path, params)
            return status, body[: max(1, len(body) // 2)], headers
        if fault.kind == "expire_offset":
            return error(400, "offset: Your pagination token has expired or is invalid. "
                              "Please restart your query.")
        if fault.kind in ("drip", "drip_body"):
            self._recorded_as, self._drip = str(fault.kind), fault
            return answer(sim, path, params)
        if fault.kind in OFFSET_FAULTS:
            self._recorded_as = str(fault.kind)
            return self._endless(sim, fault, path, params)
        status = int(fault.kind)
        headers = {}
        if status == 429:
            headers["Retry-After"] = f"{fault.retry_after if fault.retry_after is not None else 1:g}"
            status, body, _ = error(429, TOO_MANY)
            return status, body, headers
        if status in (502, 503, 504):
            html = f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"
            return status, html.encode(), {"Content-Type": "text/html"}
        return error(status, {500: "Server Error"}.get(status, f"Simulated HTTP {status}"))

    def _endless(self, sim: AsanaSimulator, fault: Fault, path: str, params: dict[str, str]
                 ) -> Answer:
        """The real page, changed as `fault` says, so that its listing would never end."""
        status, body, headers = answer(sim, path, params)
        if status != 200:
            return status, body, headers
        page = orjson.loads(body)
        if fault.kind == "cycle_offset":
            offset = fault.first_offsets[sim._query_key(params, path)]
        else:
            endpoint = path[len(API):]
            offset = sim.make_offset(params, sim.read_offset(params, endpoint), endpoint)
            first = {k: v for k, v in params.items() if k != "offset"}
            page["data"] = [] if fault.kind == "empty_page" else orjson.loads(
                answer(sim, path, first)[1])["data"]
        page["next_page"] = next_page(sim, path[len(API):], params, offset)
        return status, orjson.dumps(page), headers

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json; charset=UTF-8"))
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_dripping(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """`_send`, a byte at a time, until the client hangs up."""
        wfile = self.wfile
        self.wfile = _Drip(wfile, self._drip.seconds,  # type: ignore[assignment, union-attr]
                           headers_at_once=self._drip.kind == "drip_body")
        try:
            self._send(status, body, headers)
        except OSError:  # the client gave up waiting
            self.close_connection = True
        finally:
            self.wfile = wfile

    def _reset(self) -> None:
        # SO_LINGER 0: close with RST, as a dropped connection looks to the client
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


class _Drip:
    """Writes what it is given one byte every `seconds` (with `headers_at_once`, all of its
    first write: the headers, which `end_headers` writes at one go)."""

    def __init__(self, wfile: Any, seconds: float, headers_at_once: bool) -> None:
        self.wfile = wfile
        self.seconds = seconds
        self.passes = int(headers_at_once)

    def write(self, data: bytes) -> int:
        if self.passes:
            self.passes -= 1
            return self.wfile.write(data)
        for i in range(len(data)):
            time.sleep(self.seconds)
            self.wfile.write(data[i:i + 1])
        return len(data)

    def flush(self) -> None:
        self.wfile.flush()
