"""Where the milliseconds of `docker run --rm busybox true` go, against a corral daemon.

    sudo .venv/bin/python bench/trace_docker_run.py [-n 20] [--show N]

Starts a private corral daemon with bench/tracing/sitecustomize.py loaded
(span marks from the daemon, its launcher and each container's first
process, all on CLOCK_MONOTONIC), puts a byte relay in front of its socket
to timestamp each API request and response, runs the docker CLI N times
and prints:

  * the request-level phases of a run (median over the runs), split into
    time the CLI spends on its own and time a request waits on the daemon;
  * the median duration of every traced span;
  * the full merged timeline of the median run.

The tracing costs some 10 us per span, so absolute times are a little
higher than in start_latency.py. Everything is torn down as there.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import leakcheck  # noqa: E402
from services import BENCH_MARK, CorralDaemon, sigterm_as_interrupt  # noqa: E402

_REQUEST = re.compile(rb"^(GET|POST|HEAD|DELETE|PUT) (\S+) HTTP/1\.[01]\r\n")
_RESPONSE = re.compile(rb"^HTTP/1\.[01] (\d+)")


@dataclass
class Event:
    t: int  # monotonic ns
    who: str
    what: str


@dataclass
class Relay:
    """A unix socket in front of the daemon's that forwards bytes and notes when requests and answers pass."""

    path: Path
    upstream: Path
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, who: str, what: str) -> None:
        with self.lock:
            self.events.append(Event(time.monotonic_ns(), who, what))

    def start(self) -> None:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        count = 0
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            count += 1
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self.upstream))
            name = f"conn{count}"
            threading.Thread(target=self._pump, args=(client, upstream, name, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, name, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, name: str, request_side: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if request_side:
                    match = _REQUEST.match(data)
                    if match:
                        target = match.group(2).decode(errors="replace")
                        self.note(name, f"> {match.group(1).decode()} {_short_target(target)}")
                else:
                    match = _RESPONSE.match(data)
                    self.note(name, f"< {match.group(1).decode()}" if match else f"< {len(data)} bytes")
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self.note(name, "> EOF" if request_side else "< EOF")
            for sock in (sink,):
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


def _short_target(target: str) -> str:
    path = re.sub(r"^/v1\.\d+", "", target.split("?", 1)[0])
    return re.sub(r"/containers/[0-9a-f]{12,}/", "/containers/ID/", path)


def read_spans(path: Path) -> list[Event]:
    events = []
    for line in path.read_text().splitlines():
        pid, t, what = line.split(" ", 2)
        events.append(Event(int(t), f"pid{pid}", what))
    return events


def phases(run: list[Event], begin: int, end: int) -> dict[str, float]:
    """Request-level phases of one run, from the relay's view."""
    conn_of: dict[str, str] = {}
    sent: dict[str, int] = {}
    patterns = {
        "ping": r"/_ping$",
        "create": r"/containers/create$",
        "attach": r"/attach$",
        "wait": r"/wait$",
        "start": r"/start$",
    }
    for event in run:
        if event.what.startswith("> ") and not event.what.endswith("EOF"):
            for label, pattern in patterns.items():
                if re.search(pattern, event.what) and label not in conn_of:
                    conn_of[label], sent[label] = event.who, event.t

    def answer(label: str, after: int | None, body: bool = False) -> int | None:
        if label not in conn_of or after is None:
            return None
        for event in run:
            if (
                event.who == conn_of[label]
                and event.t >= after
                and event.what.startswith("< ")
                and (not body or "bytes" in event.what)
            ):
                return event.t
        return None

    ping_done = answer("ping", sent.get("ping"))
    create_done = answer("create", sent.get("create"))
    start_done = answer("start", sent.get("start"))
    status = answer("wait", start_done, body=True)
    attach_eof = next((e.t for e in run if e.who == conn_of.get("attach") and e.what == "< EOF"), None)
    last_answer = max((t for t in (status, attach_eof) if t is not None), default=None)
    steps = [
        ("CLI start -> ping sent (client)", begin, sent.get("ping")),
        ("ping (daemon)", sent.get("ping"), ping_done),
        ("-> create sent (client)", ping_done, sent.get("create")),
        ("create (daemon)", sent.get("create"), create_done),
        ("-> start sent, attach and wait on the way (client + daemon)", create_done, sent.get("start")),
        ("start (daemon)", sent.get("start"), start_done),
        ("start answered -> exit status sent (daemon)", start_done, status),
        ("exit status -> attach stream closed (daemon)", status, attach_eof),
        ("last answer -> CLI exited (client)", last_answer, end),
    ]
    return {name: (b - a) / 1e6 for name, a, b in steps if a is not None and b is not None}


def span_durations(events: list[Event]) -> dict[str, list[float]]:
    open_spans: dict[tuple[str, str], int] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    for event in events:
        kind, _, label = event.what.partition(" ")
        if kind == "B":
            open_spans[(event.who, label)] = event.t
        elif kind == "E":
            began = open_spans.pop((event.who, label), None)
            if began is not None:
                durations[label].append((event.t - began) / 1e6)
    return durations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument(
        "--show", type=int, default=1, help="print the merged timeline of this many runs (median first)"
    )
    parser.add_argument(
        "--settle-ms", type=float, default=200, help="idle time before each run, as in start_latency (default 200)"
    )
    args = parser.parse_args()
    docker = shutil.which("docker")
    if os.geteuid() != 0 or docker is None:
        print("trace_docker_run: needs root and the docker CLI", file=sys.stderr)
        return 2

    base = Path(tempfile.mkdtemp(prefix=f"{BENCH_MARK}-trace-", dir="/tmp"))
    net_before = leakcheck.net_snapshot()
    trace_file = base / "spans.log"
    corral = CorralDaemon(base)
    relay = Relay(base / "relay.sock", corral.socket)
    walls: list[float] = []
    runs: list[tuple[int, int]] = []
    problems: list[str] = []
    try:
        with sigterm_as_interrupt():
            try:
                corral.start(
                    extra_env={
                        "CORRAL_BENCH_TRACE": str(trace_file),
                        "PYTHONPATH": os.pathsep.join(
                            [str(BENCH_DIR / "tracing"), os.environ.get("PYTHONPATH", "")]
                        ).rstrip(os.pathsep),
                    }
                )
                corral.bootstrap_busybox()
                relay.start()
                (base / "docker-cli").mkdir()
                env = {**corral.env, "DOCKER_HOST": f"unix://{relay.path}", "DOCKER_CONFIG": str(base / "docker-cli")}
                for i in range(args.warmups + args.runs):
                    time.sleep(args.settle_ms / 1000)
                    begin = time.monotonic_ns()
                    result = subprocess.run(
                        [docker, "run", "--rm", "busybox", "true"], env=env, capture_output=True, check=False
                    )
                    end = time.monotonic_ns()
                    if result.returncode != 0:
                        problems.append(f"run {i} failed: {result.stderr.decode(errors='replace').strip()}")
                    elif i >= args.warmups:
                        runs.append((begin, end))
                        walls.append((end - begin) / 1e6)
                spans = read_spans(trace_file)
            finally:
                relay.stop()
                problems.extend(corral.stop())
                shutil.rmtree(base, ignore_errors=True)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    if not runs:
        print("\n".join(problems) or "no runs")
        return 1

    everything = sorted([*relay.events, *spans], key=lambda e: e.t)
    # Each run's window reaches to the next run's start: the daemon may finish (auto-remove) after the CLI exits.
    limits = [b for b, _ in runs[1:]] + [runs[-1][1] + 300_000_000]
    per_run = [
        [e for e in everything if begin <= e.t < limit] for (begin, _end), limit in zip(runs, limits, strict=True)
    ]
    p90 = statistics.quantiles(walls, n=10, method="inclusive")[8]
    print(
        f"docker run --rm busybox true against corral (traced), {len(runs)} runs: "
        f"median {statistics.median(walls):.1f} ms, p90 {p90:.1f} ms\n"
    )

    phase_values: dict[str, list[float]] = defaultdict(list)
    for (begin, end), run in zip(runs, per_run, strict=True):
        for name, value in phases(run, begin, end).items():
            phase_values[name].append(value)
    print("request-level phases (median ms; from the relay, so each includes a socket hop):")
    for name, values in phase_values.items():
        print(f"  {statistics.median(values):7.2f}  {name}")

    durations = span_durations([e for run in per_run for e in run if e.who.startswith("pid")])
    print("\ntraced spans (median ms per call, calls per run, max ms):")
    for label, values in sorted(durations.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(values):7.2f}  x{len(values) / len(runs):<4.1f} max {max(values):6.2f}  {label}")
    missing = sorted({e.what for e in spans if e.what.startswith("missing")})
    if missing:
        print("\nnot traced: " + "; ".join(missing))

    order = sorted(range(len(runs)), key=lambda k: walls[k])
    median_first = [order[len(order) // 2]] + [k for k in order[::-1] if k != order[len(order) // 2]]
    for k in median_first[: args.show]:
        begin, _end = runs[k]
        print(
            f"\ntimeline of run {k} ({walls[k]:.1f} ms); "
            "pids: daemon, launcher, container child; connN: API connections"
        )
        open_spans: dict[tuple[str, str], int] = {}
        printed_exit = False
        for event in per_run[k]:
            kind, _, label = event.what.partition(" ")
            suffix = ""
            if kind == "B":
                open_spans[(event.who, label)] = event.t
            elif kind == "E" and (event.who, label) in open_spans:
                suffix = f"   [{(event.t - open_spans.pop((event.who, label))) / 1e6:.2f} ms]"
            if printed_exit is False and event.t > runs[k][1]:
                print(f"  {walls[k]:8.2f}  cli       exited")
                printed_exit = True
            print(f"  {(event.t - begin) / 1e6:8.2f}  {event.who:9s} {event.what}{suffix}")
        if not printed_exit:
            print(f"  {walls[k]:8.2f}  cli       exited")

    leaks = leakcheck.check(base, net_before)
    for problem in problems:
        print(f"note: {problem}")
    print("\nleak check: " + ("clean" if not leaks else str(leaks)))
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
