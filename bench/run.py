"""Run every TokenKeep benchmark and write docs/benchmarks.md.

Usage: .venv/bin/python bench/run.py [--out docs/benchmarks.md] [--quick]
(`make bench` installs wrk and runs this.) Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from fixtures import Deployment, connect, database_bytes, deploy
from harness import TOKENKEEP, Load, Server, free_port, need, rss_mb, running, wait_healthy, wrk
from report import write_report
from upstream import Upstream

HERE = Path(__file__).resolve().parent
RANDOM_ALIAS_LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/token?provider=p" .. math.random(0, {last}))
end
"""


class Bench:
    """Settings shared by every benchmark."""

    def __init__(self, folder: Path, quick: bool) -> None:
        self.folder = folder
        self.rounds = 1 if quick else 5
        self.seconds = 2 if quick else 5
        self.scale = 1000 if quick else 10_000
        self.refresh_all = 200 if quick else 1000

    def headers(self, deployment: Deployment) -> dict[str, str]:
        """The bearer header for a deployment."""
        return {"Authorization": f"Bearer {deployment.api_key}"}

    def interleave(self, runs: dict[str, Callable[[], Load]]) -> dict[str, list[Load]]:
        """Run each load in turn, alternating the order per round."""
        names = list(runs)
        for name in names:  # warm-up: imports, caches, connections
            runs[name]()
        results: dict[str, list[Load]] = {name: [] for name in names}
        for round_ in range(self.rounds):
            for name in names if round_ % 2 == 0 else reversed(names):
                results[name].append(runs[name]())
        return results


def median_load(loads: list[Load]) -> dict[str, float]:
    """Per-figure medians of several runs."""
    return {
        "rps": statistics.median(x.rps for x in loads),
        "p50_ms": statistics.median(x.p50_ms for x in loads),
        "p99_ms": statistics.median(x.p99_ms for x in loads),
        "cpu_us": statistics.median(x.cpu_us_per_request for x in loads),
        "errors": sum(x.errors for x in loads),
        "requests": sum(x.requests for x in loads),
    }


def hot_path(b: Bench, upstream: Upstream) -> dict[str, Any]:
    """GET /api/token for a fresh token vs a bare Flask app, 2 workers each, interleaved."""
    dep = deploy(b.folder / "hot", free_port())
    connect(dep, ["acme"], token_url=upstream.url + "/token")
    path = "/api/token?provider=acme"
    with running(dep.serve_command(2), dep.url, "/healthz", env=dep.env) as tk:
        body = requests.get(tk.url + path, headers=b.headers(dep), timeout=5).json()
        port = free_port()
        bare_cmd = [sys.executable, str(HERE / "bare_app.py"), str(port), "2", json.dumps(body)]
        with running(bare_cmd, f"http://127.0.0.1:{port}", "/healthz") as bare:
            runs = {
                "bare": lambda: wrk(bare, path, headers=b.headers(dep), seconds=b.seconds),
                "tokenkeep": lambda: wrk(tk, path, headers=b.headers(dep), seconds=b.seconds),
            }
            results = b.interleave(runs)
        rss = [rss_mb(pid) for pid in tk.workers()]
    bare_m, tk_m = median_load(results["bare"]), median_load(results["tokenkeep"])
    return {
        "bare": bare_m,
        "tokenkeep": tk_m,
        "cpu_ratio": tk_m["cpu_us"] / bare_m["cpu_us"],
        "rps_ratio": tk_m["rps"] / bare_m["rps"],
        "rss_mb": rss,
        "runs": {k: [vars(x) for x in v] for k, v in results.items()},
    }


def storm(b: Bench, upstream: Upstream) -> dict[str, Any]:
    """200 concurrent requests on an expiring token, 4 workers, upstream answering in 100 ms."""
    dep = deploy(b.folder / "storm", free_port())
    token_url = upstream.url + "/token"
    connect(dep, ["acme"], token_url=token_url)
    rounds = []
    with running(dep.serve_command(4), dep.url, "/healthz", env=dep.env) as tk:
        for _ in range(3):
            connect(dep, ["acme"], token_url=token_url, seconds_left=60, lifetime=3600)
            upstream.reset()
            latencies, statuses = burst(tk, dep, 200)
            rounds.append(
                {
                    "upstream_calls": upstream.requests,
                    "ok": statuses.count(200),
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                }
            )
    return {"rounds": rounds}


def burst(tk: Server, dep: Deployment, count: int) -> tuple[list[float], list[int]]:
    """`count` concurrent GET /api/token calls released together: latencies (ms), statuses."""
    barrier = threading.Barrier(count)

    def one(_: int) -> tuple[float, int]:
        with requests.Session() as session:
            barrier.wait()
            started = time.monotonic()
            response = session.get(
                tk.url + "/api/token?provider=acme",
                headers={"Authorization": f"Bearer {dep.api_key}"},
                timeout=30,
            )
            return (time.monotonic() - started) * 1000, response.status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(pool.map(one, range(count)))
    return [a[0] for a in answers], [a[1] for a in answers]


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def isolation(b: Bench, upstream: Upstream) -> dict[str, Any]:
    """p99 of provider A's reads, alone and while provider B's upstream hangs for 10 s."""
    dep = deploy(b.folder / "isolation", free_port())
    connect(dep, ["a"], token_url=upstream.url + "/token")
    hang_url = upstream.url + "/hang/token"
    path = "/api/token?provider=a"
    baseline, hanging, b_calls = [], [], []
    with running(dep.serve_command(2), dep.url, "/healthz", env=dep.env) as tk:
        wrk(tk, path, headers=b.headers(dep), seconds=1)
        for _ in range(max(3, b.rounds // 2 + 1)):
            baseline.append(wrk(tk, path, headers=b.headers(dep), seconds=b.seconds))
            connect(dep, ["b"], token_url=hang_url, seconds_left=-10)  # expired, failure reset
            stop = threading.Event()
            callers = [
                threading.Thread(target=call_until, args=(tk, dep, "b", stop, b_calls))
                for _ in range(4)
            ]
            for caller in callers:
                caller.start()
            time.sleep(0.5)  # B's refresh is now hanging upstream
            hanging.append(wrk(tk, path, headers=b.headers(dep), seconds=b.seconds))
            stop.set()
            for caller in callers:
                caller.join()
    base_m, hang_m = median_load(baseline), median_load(hanging)
    return {
        "baseline": base_m,
        "hanging": hang_m,
        "p99_ratio": hang_m["p99_ms"] / base_m["p99_ms"],
        "b_statuses": sorted(set(b_calls)),
        "b_calls": len(b_calls),
    }


def call_until(
    tk: Server, dep: Deployment, alias: str, stop: threading.Event, seen: list[int]
) -> None:
    """Call GET /api/token for `alias` back to back until `stop` is set."""
    with requests.Session() as session:
        while not stop.is_set():
            response = session.get(
                f"{tk.url}/api/token?provider={alias}",
                headers={"Authorization": f"Bearer {dep.api_key}"},
                timeout=30,
            )
            seen.append(response.status_code)


def scale(b: Bench, upstream: Upstream) -> dict[str, Any]:
    """The hot path with 10,000 connected providers vs one; database size; `providers` time."""
    token_url = upstream.url + "/token"
    one = deploy(b.folder / "one", free_port())
    connect(one, ["p0"], token_url=token_url)
    many = deploy(b.folder / "many", free_port())
    started = time.monotonic()
    connect(many, (f"p{i}" for i in range(b.scale)), token_url=token_url, bulk=True)
    seeding = time.monotonic() - started
    # Every run requests through the same Lua script, so the only differences are
    # the size of the table and how requests spread over it (a script costs the
    # server ~5% by itself on this machine, through the client's CPU).
    one_alias = b.folder / "one_alias.lua"
    one_alias.write_text(RANDOM_ALIAS_LUA.replace("{last}", "0"))
    any_alias = b.folder / "random_alias.lua"
    any_alias.write_text(RANDOM_ALIAS_LUA.replace("{last}", str(b.scale - 1)))
    path = "/api/token?provider=p0"
    many_name = f"{b.scale:,} providers"
    with (
        running(one.serve_command(2), one.url, "/healthz", env=one.env) as single,
        running(many.serve_command(2), many.url, "/healthz", env=many.env) as multi,
    ):
        scale_results = b.interleave(
            {
                "one provider": lambda: wrk(
                    single, path, headers=b.headers(one), seconds=b.seconds, script=one_alias
                ),
                f"{many_name}, one of them asked for": lambda: wrk(
                    multi, path, headers=b.headers(many), seconds=b.seconds, script=one_alias
                ),
                f"{many_name}, a random one per request": lambda: wrk(
                    multi, path, headers=b.headers(many), seconds=b.seconds, script=any_alias
                ),
            }
        )
        rss = [rss_mb(pid) for pid in multi.workers()]
    results = scale_results
    timings = []
    for _ in range(3):
        started = time.monotonic()
        listing = subprocess.run(
            [str(TOKENKEEP), "--config", str(many.config), "providers"],
            env=many.env,
            capture_output=True,
            text=True,
            check=True,
        )
        timings.append(time.monotonic() - started)
    loads = {k: median_load(v) for k, v in results.items()}
    first, hot, spread = loads.values()
    return {
        "providers": b.scale,
        "seeding_s": seeding,
        "loads": loads,
        "hot_cpu_ratio": hot["cpu_us"] / first["cpu_us"],
        "hot_rps_ratio": hot["rps"] / first["rps"],
        "cpu_ratio": spread["cpu_us"] / first["cpu_us"],
        "rps_ratio": spread["rps"] / first["rps"],
        "db_mb": database_bytes(many) / 1e6,
        "providers_s": statistics.median(timings),
        "providers_lines": len(listing.stdout.splitlines()),
        "rss_mb": rss,
    }


def refresh_all(b: Bench, upstream: Upstream) -> dict[str, Any]:
    """`tokenkeep refresh-all` over 1,000 due tokens, upstream answering in 100 ms."""
    dep = deploy(b.folder / "refresh-all", free_port())
    aliases = [f"r{i}" for i in range(b.refresh_all)]
    connect(dep, aliases, token_url=upstream.url + "/token", seconds_left=600, bulk=True)
    upstream.reset()
    started = time.monotonic()
    result = subprocess.run(
        [str(TOKENKEEP), "--config", str(dep.config), "refresh-all", "--json"],
        env=dep.env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    summary = json.loads(result.stdout)["summary"] if result.stdout else {}
    return {
        "tokens": len(aliases),
        "wall_s": wall,
        "exit": result.returncode,
        "summary": summary,
        "upstream_calls": upstream.requests,
        "max_in_flight": upstream.max_in_flight,
    }


def footprint(b: Bench) -> dict[str, Any]:
    """`tokenkeep --help` time and `tokenkeep serve` time to ready."""
    helps = []
    for _ in range(10):
        started = time.monotonic()
        subprocess.run([str(TOKENKEEP), "--help"], capture_output=True, check=True)
        helps.append(time.monotonic() - started)
    readies = []
    dep = deploy(b.folder / "ready", free_port())
    for _ in range(3):
        process = subprocess.Popen(
            dep.serve_command(2),
            env=dep.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            readies.append(wait_healthy(dep.url + "/healthz", process))
        finally:
            process.terminate()
            process.wait(timeout=15)
    return {"help_s": statistics.median(helps), "ready_s": statistics.median(readies)}


def main() -> None:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="short runs, for trying it out")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    args = parser.parse_args()
    need("wrk")
    benches: dict[str, Callable[..., dict[str, Any]]] = {
        "hot_path": hot_path,
        "storm": storm,
        "isolation": isolation,
        "scale": scale,
        "refresh_all": refresh_all,
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Upstream(delay=0.1, hang=10.0) as upstream:
        b = Bench(Path(tmp), args.quick)
        for name, run in benches.items():
            if args.only and name not in args.only:
                continue
            print(f"running {name} ...", flush=True)
            results[name] = run(b, upstream)
            print(json.dumps(results[name], indent=1, default=str)[:2000], flush=True)
        if not args.only or "footprint" in args.only:
            results["footprint"] = footprint(b)
            print(json.dumps(results["footprint"]), flush=True)
    command = "make bench" + (" (--quick)" if args.quick else "")
    if not args.only:
        write_report(args.out, results, command=command, quick=args.quick)
        raw = args.out.with_suffix(".json")
        raw.write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(f"wrote {args.out} and {raw}")


if __name__ == "__main__":
    main()
