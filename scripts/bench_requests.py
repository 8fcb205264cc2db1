"""CPU the tap spends per HTTP request, against the local sandbox (not a test: nothing is asserted).

    .venv/bin/python scripts/bench_requests.py [--requests 400] [--stream profiles] [--gzip] [--profile]
        [--latency-ms 300] [--layers]

Starts ``python -m klaviyo_sandbox`` (no rate limits) as a subprocess, builds the tap
with every stream selected, and fetches ``--requests`` pages of one stream the way its
reader does (``KlaviyoStream.fetch_page``: the request built, paced, sent, retried on
failure, its body read and split into raw records), following ``links.next`` and starting
over at the end. Records are not decoded: that is per-record CPU, not per-request.
Prints this process's CPU seconds per request (the sandbox's CPU is its own process's).
``--profile`` samples the run with py-spy (next to this venv's python) and prints the
functions that took the most of it.

``--latency-ms`` makes the sandbox wait before each answer, as the benchmark's does: the same code
then costs about twice the CPU per request (each wait leaves the caches cold). The tap's limiter
waits too, without latency: it paces to the spec's limits (profiles: 700 a minute), whatever the
sandbox's. ``--layers`` also sends the same requests (the same ``links.next`` URLs and headers)
through each layer below the tap alone, unpaced: requests' ``Session.send``, urllib3's connection
pool and http.client, each reading the whole body: what a transport below requests could save.
Compare the layers with ``--latency-ms 300``, where every layer waits alike.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import math
import resource
import subprocess
import sys
import time
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fetch(config: dict, stream_name: str, count: int) -> tuple[float, float]:
    """(CPU s, wall s) of ``count`` page fetches of the stream, after one untimed warm-up chain."""
    from tap_klaviyo.tap import TapKlaviyo  # noqa: PLC0415 - after sys.path is set
    from tap_klaviyo.windows import WHOLE_RANGE  # noqa: PLC0415

    tap = TapKlaviyo(config=config)
    stream = tap.streams[stream_name]
    stream.fetch_page(None, WHOLE_RANGE)  # connections, limiters, caches
    next_url: str | None = None
    start_cpu, start_wall = cpu_seconds(), time.monotonic()
    for _ in range(count):
        page = stream.fetch_page(None, WHOLE_RANGE, next_url)
        next_url = page.next_url
    return cpu_seconds() - start_cpu, time.monotonic() - start_wall


#: ``--layers``: rounds of the same requests through each layer, interleaved (the best of each is kept).
ROUNDS = 3
#: ``--profile``: the sampling profiler, not a dependency of the plugins, next to this Python.
PY_SPY = Path(sys.executable).with_name("py-spy")
Send = t.Callable[[t.Any, t.Any], None]  # (links.next or None, its prepared request)


def layers(config: dict, stream_name: str, count: int) -> dict[str, float]:
    """CPU s per request of the stream's pages through the tap and through each HTTP layer below it."""
    import requests  # noqa: PLC0415 - after sys.path is set
    import urllib3  # noqa: PLC0415

    from tap_klaviyo.tap import TapKlaviyo  # noqa: PLC0415
    from tap_klaviyo.windows import WHOLE_RANGE  # noqa: PLC0415

    stream = TapKlaviyo(config=config).streams[stream_name]
    urls: list[str | None] = [None]
    while len(urls) < count:  # one chain's links, the first page's request again at its end
        urls.append(stream.fetch_page(None, WHOLE_RANGE, urls[-1]).next_url)
    prepared = []
    for url in urls:
        request = stream.build_request(None, WHOLE_RANGE, url)
        stream.connection.auth(request)
        prepared.append(request)
    base = urllib3.util.parse_url(config["base_url"])
    session = requests.Session()
    pool = urllib3.HTTPConnectionPool(base.host, base.port, maxsize=1)
    connection = http.client.HTTPConnection(base.host, base.port)

    def by_tap(url: str | None, _request: requests.PreparedRequest) -> None:
        stream.fetch_page(None, WHOLE_RANGE, url)

    def by_requests(_url: str | None, request: requests.PreparedRequest) -> None:
        session.send(request, stream=True, proxies={}, timeout=(10, 60)).content  # noqa: B018 - reads the body

    def by_urllib3(_url: str | None, request: requests.PreparedRequest) -> None:
        pool.urlopen("GET", request.path_url, headers=dict(request.headers), redirect=False, retries=False)

    def by_http_client(_url: str | None, request: requests.PreparedRequest) -> None:
        connection.request("GET", request.path_url, headers=dict(request.headers))
        answer = connection.getresponse()
        body = answer.read()
        if answer.getheader("Content-Encoding") == "gzip":
            gzip.decompress(body)  # as the others decode it

    ways: dict[str, Send] = {
        "the tap (fetch_page: built, paced, sent, read, split)": by_tap,
        "requests (Session.send)": by_requests,
        "urllib3 (pool.urlopen)": by_urllib3,
        "http.client": by_http_client,
    }
    for send in ways.values():
        send(urls[0], prepared[0])  # a connection, caches
    cpu: dict[str, float] = {}
    for _ in range(ROUNDS):  # interleaved, the best round of each
        for name, send in ways.items():
            start = cpu_seconds()
            for url, request in zip(urls, prepared):
                send(url, request)
            cpu[name] = min(cpu.get(name, math.inf), (cpu_seconds() - start) / len(prepared))
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--stream", default="profiles")
    parser.add_argument("--scale", type=float, default=1.0, help="sandbox --scale")
    parser.add_argument("--gzip", action="store_true", help="the sandbox gzips answers")
    parser.add_argument("--profile", action="store_true", help="sample with py-spy")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sandbox --latency-ms")
    parser.add_argument("--layers", action="store_true", help="also through requests, urllib3, http.client alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # config JSON: the measured process
    parser.add_argument("--child-layers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile and not PY_SPY.exists():
        parser.error(
            f"--profile: py-spy is not installed next to this Python; run {sys.executable} -m pip install py-spy"
        )
    if args.child and args.child_layers:
        print(json.dumps(layers(json.loads(args.child), args.stream, args.requests)))
        return 0
    if args.child:
        cpu, wall = fetch(json.loads(args.child), args.stream, args.requests)
        print(json.dumps({"cpu_s": cpu, "wall_s": wall}))
        return 0
    sandbox_args = [sys.executable, "-m", "klaviyo_sandbox", "--port", "0", "--scale", str(args.scale)]
    sandbox_args += ["--rate-limit-scale", "0", "--latency-ms", str(args.latency_ms)]
    sandbox_args += ["--gzip"] if args.gzip else []
    sandbox = subprocess.Popen(sandbox_args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        base_url, api_key = sandbox.stdout.readline().split()  # type: ignore[union-attr]
        config = {"api_key": api_key, "base_url": base_url, "discover_custom_fields": False}
        child = [sys.executable, __file__, "--stream", args.stream, "--requests", str(args.requests)]
        child += ["--child", json.dumps(config)]
        if args.profile:
            out = ROOT / ".bench_requests.txt"
            record = ["record", "--gil", "--rate", "500", "--format", "raw", "--output", str(out)]
            child = [str(PY_SPY), *record, "--", *child]
        output = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        result = json.loads(next(line for line in output.splitlines() if line.startswith("{")))  # py-spy prints too
        if args.layers:
            run = [sys.executable, __file__, "--stream", args.stream, "--requests", str(args.requests)]
            run += ["--child", json.dumps(config), "--child-layers"]
            by_layer = json.loads(subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    per_request_ms = 1000 * result["cpu_s"] / args.requests
    print(
        f"{args.stream}: {args.requests} requests, CPU {result['cpu_s']:.3f} s = {per_request_ms:.2f} ms per request "
        f"(wall {result['wall_s']:.1f} s)"
    )
    if args.profile:
        print(top_functions(ROOT / ".bench_requests.txt"))
    if args.layers:
        print("CPU per request, the same requests through each layer alone:")
        for name, seconds in by_layer.items():
            print(f"  {1e6 * seconds:6.0f} us  {name}")
    return 0


def top_functions(path: Path, top: int = 30) -> str:
    """The functions most samples were in (anywhere in the stack), as a share of the fetches' samples."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if "fetch_page" not in stack:
            continue
        total += int(number)
        for frame in set(stack.split(";")):
            name = frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
            counts[name] = counts.get(name, 0) + int(number)
    path.unlink()
    rows = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return "\n".join(f"{100 * n / max(total, 1):5.1f}%  {name}" for name, n in rows)


if __name__ == "__main__":
    sys.exit(main())
