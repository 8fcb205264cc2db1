"""CPU of the tap's record path alone: a sync replayed from recorded answers, in this process.

    .venv/bin/python scripts/cpu_replay.py [--stream events] [--scale 2] [--data realistic] [--runs 3]
        [--cprofile FILE]

``scripts/benchmark.py`` measures a whole run (start-up, HTTP, worker threads and the machine's
load included), whose CPU figure moves by 20% between runs on the shared development machine.
This script starts the sandbox (no latency), syncs one stream once recording every answer in
order, then syncs again ``--runs`` times with ``max_concurrency`` 1, each
request answered by the next recorded body (``links.next`` differs between runs only in the
window bounds), output to /dev/null. It prints the best process CPU per 100k records: decoding,
flattening, custom-field typing, the SDK's loop and writing, without the network. Not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import msgspec
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from klaviyo_core.client import KlaviyoConnection  # noqa: E402 - after the path above
from tap_klaviyo.tap import TapKlaviyo  # noqa: E402
from tests.tap.conftest import select_only  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", default="events")
    parser.add_argument("--scale", default="2", help="the sandbox's --scale")
    parser.add_argument("--data", default="standard", choices=("standard", "realistic"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cprofile", help="also profile one more replay into this file")
    args = parser.parse_args()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_sandbox", "--port", "0", "--scale", args.scale, "--latency-ms", "0",
         "--rate-limit-scale", "100", "--data", args.data],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:  # the sandbox stays up: the few requests not sent through KlaviyoConnection.send go to it
        assert sandbox.stdout is not None
        base_url, api_key = sandbox.stdout.readline().split()
        config = {"api_key": api_key, "base_url": base_url, "start_date": "2000-01-01T00:00:00Z", "max_concurrency": 1}
        catalog = select_only(TapKlaviyo(config=config), args.stream)
        bodies = record_answers(lambda: sync(config, catalog))
        logging.disable(logging.WARNING)
        best = min(replay_cpu(bodies, lambda: sync(config, catalog)) for _ in range(args.runs))
        if args.cprofile:
            with replayed(bodies):
                names = {"config": config, "catalog": catalog}
                cProfile.runctx("sync(config, catalog)", globals(), names, args.cprofile)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    records = sum(len(msgspec.json.decode(body).get("data") or []) for body in bodies)
    print(
        f"{args.stream} ({args.data}): {len(bodies)} answers, {records:,} resources; "
        f"best CPU {best:.2f} s = {best / max(records, 1) * 100_000:.2f} s per 100k"
    )


def sync(config: dict, catalog: dict) -> None:
    stdout = sys.stdout
    with open(os.devnull, "w") as sys.stdout:
        try:
            TapKlaviyo(config=config, catalog=catalog).sync_all()
        finally:
            sys.stdout = stdout


def replay_cpu(bodies: list[bytes], action: t.Callable[[], None]) -> float:
    with replayed(bodies):
        started = time.process_time()
        action()
        return time.process_time() - started


def record_answers(action: t.Callable[[], None]) -> list[bytes]:
    bodies: list[bytes] = []
    send = KlaviyoConnection.send

    def recording(self: KlaviyoConnection, request: requests.PreparedRequest, decode: t.Any = None) -> t.Any:
        answer = send(self, request, decode)
        bodies.append(answer.content)
        return answer

    KlaviyoConnection.send = recording  # type: ignore[method-assign]  # a measuring harness
    try:
        action()
    finally:
        KlaviyoConnection.send = send  # type: ignore[method-assign]
    return bodies


class replayed:  # noqa: N801 - used as a context manager, like a function
    """Answer every request with the next recorded body."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies, self.position, self.send = bodies, 0, KlaviyoConnection.send

    def __enter__(self) -> None:
        def replaying(connection: KlaviyoConnection, request: requests.PreparedRequest, decode: t.Any = None) -> t.Any:
            answer = requests.Response()
            answer.status_code, answer.url = 200, str(request.url)
            answer._content = self.bodies[self.position % len(self.bodies)]  # noqa: SLF001 - how requests holds a body
            answer.headers["Content-Type"] = "application/vnd.api+json"
            self.position += 1
            if decode:
                decode(answer)
            return answer

        KlaviyoConnection.send = replaying  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        KlaviyoConnection.send = self.send  # type: ignore[method-assign]
        self.position = 0


if __name__ == "__main__":
    main()
