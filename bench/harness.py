"""Benchmark plumbing: start servers, drive wrk, read CPU and memory from /proc.

Everything listens on 127.0.0.1. CPU per request is the utime + stime of a
server's master and worker processes before and after a run, divided by the
requests wrk completed: steadier on a noisy 2-core machine than requests/s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
TOKENKEEP = BIN / "tokenkeep"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mb(pid: int) -> float:
    """Resident set size of one process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    """A running gunicorn server: its URL, master process and workers."""

    url: str
    process: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.process.pid, *children(self.process.pid)]

    def workers(self) -> list[int]:
        """The worker processes."""
        return children(self.process.pid)


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 20) -> float:
    """Poll `url` until it answers 200; the seconds that took."""
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=1, headers={"Connection": "close"}).status_code == 200:
                return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"{url} not healthy in {seconds} s")
        time.sleep(0.01)


@contextlib.contextmanager
def running(
    command: Sequence[str], url: str, health: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run a server command until the block ends."""
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        list(command), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        wait_healthy(url + health, process)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass(frozen=True)
class Load:
    """One wrk run's figures, with the server CPU it cost."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    server: Server,
    path: str,
    *,
    headers: dict[str, str],
    seconds: int = 5,
    threads: int = 2,
    connections: int = 16,
    script: Path | None = None,
) -> Load:
    """Run wrk against `server` and measure the server's CPU meanwhile."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(server.url + path)
    pids = server.pids()
    before = cpu_seconds(pids)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    spent = cpu_seconds(pids) - before
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return Load(total, rps, p50, p99, errors, spent / max(total, 1) * 1e6)


def need(tool: str) -> str:
    """The path of a command-line tool, or exit with how to get it."""
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is missing: run `make bench`, which installs it")
    return path


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = subprocess.run(
        [str(BIN / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    wanted = {"flask", "werkzeug", "gunicorn", "cryptography", "tokenkeep"}
    packages = {p["name"].lower(): p["version"] for p in json.loads(versions or "[]")}
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": f"{os.cpu_count()} x {model}",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "packages": ", ".join(f"{k} {v}" for k, v in sorted(packages.items()) if k in wanted),
        "wrk": (wrk_version.stdout or wrk_version.stderr).split("\n")[0].strip(),
    }
