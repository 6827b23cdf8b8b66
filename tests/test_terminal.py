"""What a person sees: a real `asana-etl sync` on a pseudo-terminal, every byte it
writes rendered by a terminal emulator (pyte), screen and scrollback, and held against
the log of the same sync piped.

The sync has more scopes than the terminal has rows, and logs at debug: hundreds of
lines from the fetcher process arrive while the live display redraws.
"""

from __future__ import annotations

import collections
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyte
import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.simulator import Dataset
from tests.helpers import TOKEN, listed

SCOPES = 26
#: (columns, rows): both have fewer rows than there are scopes
SIZES = [(120, 24), (80, 12)]
TIMEOUT = 60.0

TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
#: a whole log line of the text format: its context suffix closes it, and no other
#: line's start is inside it
LOG_LINE = re.compile(rf"({TIMESTAMP}) (DEBUG|INFO|WARNING|ERROR) ([\w.]+): "
                      rf"((?:(?!{TIMESTAMP}).)*\[run=\d+(?: scope=[\w:]+)?\])")
TITLE = re.compile(r"(sync|demo): (starting|\d+/\d+ scopes)")
HEADER = re.compile(r"scope +pages +entries +new +changed +deleted +running$")
ROW = re.compile(r"(?:user|project|portfolio|task|workspace):\d+ +(\d+)"
                 r" +[\d,]+ +[\d,]+ +[\d,]+ +[\d,]+ +(\d+ s)?$")
MORE = re.compile(r"… and \d+ more running$")
SUMMARY = re.compile(r"sync succeeded: \d+ scopes, ")
#: what rich sends to begin a redraw (back to the start of the line, erase it)
REDRAW = b"\r\x1b[2K"
STARTS = (re.compile(rf"{TIMESTAMP} (DEBUG|INFO|WARNING|ERROR) [\w.]+: "), TITLE, HEADER, ROW,
          MORE, SUMMARY)
WHOLE = (LOG_LINE, re.compile(TITLE.pattern + r".*\d s"), HEADER, ROW, MORE,
         re.compile(SUMMARY.pattern + r".* rejected in [\d.]+ s"))


@pytest.fixture
def dataset() -> Dataset:
    """One user scope each: an entry is loaded by one scope only, so that the counts in
    the log are the same whichever scope runs first."""
    return Dataset.generate(seed=11, entries=3000, users=SCOPES, projects=3, portfolios=1,
                            tasks=20)


@pytest.fixture
def sync_command(tmp_path, asana_server):
    """sync(database) -> argv and environment of an `asana-etl sync` at debug level."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[asana]\nbase_url = "{asana_server.base_url}"\npage_size = 6\n'
        f"requests_per_minute = 1000000\nconcurrency = 4\n"
        f"[scopes]\n{listed('users', list(asana_server.dataset.users))}\n", encoding="utf-8")

    def command(database: str) -> tuple[list[str], dict[str, str]]:
        env = terminal_env(ASANA_ACCESS_TOKEN=TOKEN,
                           ASANA_ETL_DATABASE_URL=f"sqlite:///{tmp_path / database}")
        return [sys.executable, "-m", "etl", "--config", str(config), "--log-level", "debug",
                "sync"], env

    return command


def terminal_env(**values: str) -> dict[str, str]:
    """This environment with `values`, as on an xterm: nothing that would tell rich the
    size (the pseudo-terminal's is the one), or force or forbid colours and terminal
    codes, and no default log level."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
                           "TTY_INTERACTIVE", "ASANA_ETL_LOG_LEVEL")}
    return {**env, "TERM": "xterm-256color", **values}


@pytest.mark.slow
@pytest.mark.parametrize(("columns", "rows"), SIZES, ids=[f"{c}x{r}" for c, r in SIZES])
def test_a_sync_on_a_terminal_shows_every_log_line_whole_above_its_progress(
        sync_command, tmp_path, columns, rows):
    argv, env = sync_command("piped.db")
    piped = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stderr  # no progress, no escape codes when piped
    expected = collections.Counter(_message(line) for line in piped.stderr.splitlines())
    assert len(expected) > 300  # the fetcher's page lines among them

    argv, env = sync_command("terminal.db")
    seen = Emulator(columns, rows)
    assert run_on_terminal(argv, env, tmp_path, seen) == 0

    lines = seen.lines()
    unexplained = [line for line in lines if not any(p.fullmatch(line) for p in WHOLE)]
    assert unexplained == []
    logged = [line for line in lines if LOG_LINE.fullmatch(line)]
    missing = expected - collections.Counter(_message(line) for line in logged)
    assert missing == collections.Counter(), f"{sum(missing.values())} log lines not whole"
    _assert_in_order(logged)

    # no frame left behind: one title, the final frame's, after the run's last line
    titles = [i for i, line in enumerate(lines) if TITLE.match(line)]
    assert len(titles) == 1
    assert lines[titles[0]].startswith(f"sync: {SCOPES}/{SCOPES} scopes, ")
    assert "run #1 finished: succeeded" in lines[titles[0] - 1]
    stale = [line for line in lines if HEADER.match(line) or ROW.match(line) or MORE.match(line)]
    assert stale == []

    # while it ran: redrawn again and again, scopes most pages first, cut to the height
    assert len(seen.titles) >= 4
    assert seen.tallest <= rows - 1
    assert seen.cut  # "… and N more running" with as many rows as fit


@pytest.mark.slow
def test_the_demo_on_a_terminal_shows_its_progress_then_its_result_without_info_lines(tmp_path):
    seen = Emulator(200, 30)
    argv = [sys.executable, "-m", "etl", "demo", "--entries", "300"]
    assert run_on_terminal(argv, terminal_env(), tmp_path, seen) == 0

    assert seen.titles  # it was shown while the demo ran
    assert not seen.screen.history.top
    screen = [row.rstrip() for row in seen.screen.display if row.strip()]
    assert screen[0].startswith("demo: 20/20 scopes, 672 entries, ")
    assert screen[1] == f"database: {tmp_path / 'asana_demo.db'}"
    assert screen[2] == "hours per project, top five:"
    assert screen[-1].startswith("demo succeeded: 20 scopes, 672 entries seen, 300 inserted")
    assert not [row for row in screen if " INFO " in row]


def test_the_demo_logs_info_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    quiet = runner.invoke(cli, ["demo", "--entries", "100"], env={"ASANA_ETL_LOG_LEVEL": None})
    asked = runner.invoke(cli, ["--log-level", "info", "demo", "--entries", "100"])
    assert quiet.exit_code == asked.exit_code == 0
    assert quiet.stderr == ""
    assert re.search(r" INFO etl\.run\.pipeline: run #\d+ \(demo\) started: 20 scopes", asked.stderr)


def _message(line: str) -> str:
    """A log line without its timestamp, and with the run's duration masked."""
    match = LOG_LINE.fullmatch(line)
    assert match, f"not a whole log line: {line!r}"
    return re.sub(r" in \d+(\.\d+)? s \[", " in … s [", line[len(match[1]) + 1:])


#: The loggers of the run's own process (the fetcher's records reach it through a pipe).
RUN_LOGGERS = {"etl.run.pipeline", "etl.run.record", "etl.run.loader", "etl.run.completion"}


def _assert_in_order(logged: list[str]) -> None:
    """The run's lines come in the order it logged them, and so do the fetcher's, which
    travel through a pipe to the run's process: each scope's pages come 1, 2, 3…"""
    run: list[str] = []
    pages: dict[str, list[int]] = collections.defaultdict(list)
    for line in logged:
        match = LOG_LINE.fullmatch(line)
        if match[3] in RUN_LOGGERS:
            run.append(match[1])
        page = re.search(r"scope (\S+): page (\d+), ", match[4])
        if page:
            pages[page[1]].append(int(page[2]))
    assert run == sorted(run)
    assert len(pages) == SCOPES
    for scope, numbers in pages.items():
        assert numbers == list(range(1, len(numbers) + 1)), scope


@dataclass
class Emulator:
    """A terminal emulator of `columns` × `rows` with unbounded scrollback, that also
    looks at each state of the screen as the bytes come."""

    columns: int
    rows: int
    titles: set[str] = field(default_factory=set)
    tallest: int = 0  # rows of the tallest progress frame seen
    cut: bool = False  # a frame ended "… and N more running" below a full table

    def __post_init__(self) -> None:
        self.screen = pyte.HistoryScreen(self.columns, self.rows, history=1_000_000)
        self.stream = pyte.ByteStream(self.screen)

    def feed(self, data: bytes) -> None:
        """Emulate `data`, looking at the screen before each redraw of the display: it
        is whole then, as it stood until the redraw began."""
        for i, part in enumerate(data.split(REDRAW)):
            if i:
                self._look(self.screen.display)
                self.stream.feed(REDRAW)
            self.stream.feed(part)

    def _look(self, display: list[str]) -> None:
        """Take note of the progress frame on screen, if any: its height, whether it was
        cut to fit, and that its scopes come most pages first."""
        for top, line in enumerate(display):
            if TITLE.match(line):
                self.titles.add(line.rstrip())
                frame = [line.rstrip()]
                for below in (row.rstrip() for row in display[top + 1:]):
                    if not (HEADER.match(below) or ROW.match(below) or MORE.match(below)):
                        break
                    frame.append(below)
                self.tallest = max(self.tallest, len(frame))
                pages = [int(m[1]) for m in map(ROW.match, frame) if m]
                assert pages == sorted(pages, reverse=True), frame
                if frame and MORE.match(frame[-1]) and len(frame) == self.rows - 1:
                    self.cut = True
                return

    def lines(self) -> list[str]:
        """Every line written, scrolled off or on screen, blank ones left out; a row that
        begins no line of the sync's is taken for the rest of the line above it, that the
        terminal wrapped (rows are whole: `columns` characters)."""
        top = ["".join(row[x].data for x in range(self.columns)) for row in self.screen.history.top]
        lines: list[str] = []
        for row in top + self.screen.display:
            if not row.strip():
                continue
            if lines and not any(p.match(row.rstrip()) for p in STARTS):
                lines[-1] += row
            else:
                lines.append(row)
        return [line.rstrip() for line in lines]


def run_on_terminal(argv: list[str], env: dict[str, str], cwd: Path, terminal: Emulator) -> int:
    """Run `argv` with a pseudo-terminal of the terminal's size as its stdin, stdout and
    stderr, feeding all it writes to `terminal`; its exit status."""
    master, slave = os.openpty()
    size = struct.pack("HHHH", terminal.rows, terminal.columns, 0, 0)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                               start_new_session=True)
    os.close(slave)
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no end of output within {TIMEOUT:.0f} s")
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every copy of the slave is closed
                break
            if not data:
                break
            terminal.feed(data)
        return process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
