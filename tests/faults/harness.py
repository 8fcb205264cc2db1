"""Helpers for the fault tests: sandboxes, plugin runs as subprocesses, Singer output parsing.

Every plugin runs as its installed console script, exactly as a pipeline runs it, against a
loopback sandbox (``klaviyo_sandbox``) that is deterministic per seed. ``FIGURES`` collects
the numbers the terminal summary prints (faults injected per kind, kill points, bad inputs).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from klaviyo_sandbox import Sandbox, SandboxConfig

BIN = Path(sys.executable).parent
TAP = str(BIN / "tap-klaviyo")
TARGET = str(BIN / "target-klaviyo")

#: Small enough that a full sync takes about a second, big enough for several pages per stream.
SCALE = 0.05
#: Read timeout the plugins use in these tests: above the sandbox's slow answers (1-2 s), far
#: below its stalled ones, so a ``timeout`` fault costs seconds instead of two minutes.
REQUEST_TIMEOUT = 2.5


# -- figures for the report ------------------------------------------------------------------


class Figures:
    """Counters every test adds to; printed by conftest's terminal summary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.rows_lost = 0

    def add_faults(self, counters: t.Mapping[str, int]) -> dict[str, int]:
        injected = {key.removeprefix("fault:"): n for key, n in counters.items() if key.startswith("fault:")}
        with self._lock:
            self.faults.update(injected)
        return injected

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def lost(self, n: int) -> None:
        with self._lock:
            self.rows_lost += n

    def as_dict(self) -> dict:
        return {
            "faults_injected_and_survived": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            **dict(sorted(self.counts.items())),
            "rows_lost": self.rows_lost,
        }


FIGURES = Figures()


# -- sandboxes ---------------------------------------------------------------------------------


def sandbox_config(seed: int = 21, **overrides: t.Any) -> SandboxConfig:
    settings = {
        "seed": seed,
        "scale": SCALE,
        "rate_limit_scale": 0.0,
        "latency_ms": 0.0,
        "job_seconds": 0.3,
        "timeout_seconds": 60.0,
    }
    settings.update(overrides)
    return SandboxConfig(**settings)


@contextlib.contextmanager
def sandbox(seed: int = 21, **overrides: t.Any) -> t.Iterator[Sandbox]:
    with Sandbox(sandbox_config(seed, **overrides)) as box:
        yield box


def fault_counters(box: Sandbox) -> dict[str, int]:
    return {k: v for k, v in box.store.counters.items() if k.startswith("fault:")}


# -- running the plugins -------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    elapsed: float
    killed: bool = False

    @property
    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "ERROR" in line]


def plugin_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment a pipeline gives a plugin: no stray plugin settings, a private config home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_KLAVIYO", "TARGET_KLAVIYO", "KLAVIYO_"))}
    env["XDG_CONFIG_HOME"] = str(workdir / "xdg")
    env.update(extra)
    return env


def write_json(path: Path, value: t.Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def run_plugin(
    executable: str,
    args: t.Sequence[str],
    workdir: Path,
    *,
    stdin: bytes | str | None = None,
    timeout: float = 240,
    env: dict[str, str] | None = None,
) -> Run:
    started = time.monotonic()
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [executable, *args], input=data, capture_output=True, timeout=timeout, cwd=workdir,
        env=env or plugin_env(workdir), check=False,
    )  # fmt: skip
    return Run(
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
        time.monotonic() - started,
    )


def tap_config(box: Sandbox, **extra: t.Any) -> dict:
    return {"api_key": box.api_key, "base_url": box.base_url, "request_timeout": REQUEST_TIMEOUT, **extra}


def run_tap(config: dict, workdir: Path, *, state: dict | None = None, args: t.Sequence[str] = (), **kw: t.Any) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["--config", str(write_json(workdir / "tap-config.json", config)), *args]
    if state is not None:
        argv += ["--state", str(write_json(workdir / "state.json", state))]
    return run_plugin(TAP, argv, workdir, **kw)


def run_target(config: dict, workdir: Path, singer: bytes | str, *, args: t.Sequence[str] = (), **kw: t.Any) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["--config", str(write_json(workdir / "target-config.json", config)), *args]
    return run_plugin(TARGET, argv, workdir, stdin=singer, **kw)


def in_parallel(jobs: t.Mapping[str, t.Callable[[], t.Any]], workers: int = 12) -> dict[str, t.Any]:
    """Run independent jobs (each mostly waiting on a subprocess) at the same time."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# -- Singer output -------------------------------------------------------------------------------


@dataclass
class Output:
    """A tap's messages, by stream."""

    messages: list[dict]

    @property
    def schemas(self) -> dict[str, dict]:
        return {m["stream"]: m for m in self.messages if m["type"] == "SCHEMA"}

    def key_properties(self, stream: str) -> list[str]:
        return list(self.schemas[stream].get("key_properties") or [])

    def replication_key(self, stream: str) -> str | None:
        keys = self.schemas[stream].get("bookmark_properties") or []
        return keys[0] if keys else None

    @property
    def records(self) -> dict[str, list[dict]]:
        by_stream: dict[str, list[dict]] = collections.defaultdict(list)
        for m in self.messages:
            if m["type"] == "RECORD":
                by_stream[m["stream"]].append(m["record"])
        return dict(by_stream)

    @property
    def stream_order(self) -> list[str]:
        return list(dict.fromkeys(m["stream"] for m in self.messages if m["type"] == "RECORD"))

    @property
    def last_state(self) -> dict | None:
        states = [m["value"] for m in self.messages if m["type"] == "STATE"]
        return states[-1] if states else None

    def pk(self, stream: str, record: dict) -> tuple:
        return tuple(record.get(k) for k in self.key_properties(stream))

    def keyed(self, stream: str) -> dict[tuple, dict]:
        return {self.pk(stream, r): r for r in self.records.get(stream, [])}

    def duplicates(self) -> dict[str, list[tuple]]:
        found = {}
        for stream, records in self.records.items():
            counts = collections.Counter(self.pk(stream, r) for r in records)
            dupes = [pk for pk, n in counts.items() if n > 1]
            if dupes:
                found[stream] = dupes
        return found


def canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def parse_time(value: t.Any) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


# -- expected data sets ----------------------------------------------------------------------------

_CLEAN: dict[tuple, Output] = {}
_CLEAN_LOCK = threading.Lock()


def clean_output(seed: int, workdir: Path, **config_extra: t.Any) -> Output:
    """A fault-free full sync of the sandbox with this seed: the expected data set (cached)."""
    key = (seed, tuple(sorted(config_extra.items())))
    with _CLEAN_LOCK:
        if key not in _CLEAN:
            with sandbox(seed) as box:
                run = run_tap(tap_config(box, **config_extra), workdir / f"clean-{seed}")
            assert run.code == 0, run.stderr[-3000:]
            _CLEAN[key] = Output(run.messages)
        return _CLEAN[key]


# -- killing a plugin mid-run ------------------------------------------------------------------------

Trigger = t.Callable[[dict, "KillableRun"], bool]


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    """Write a plugin's stdin from a thread: a pipe fills up long before a big input is read."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, OSError):  # killed before it read everything
        pass


class KillableRun:
    """A tap run whose stdout is read line by line; SIGKILLed the moment ``trigger`` says so.

    After the kill, what the tap had already written into the pipe is still read, as a
    target at the other end of the pipe would: only a final line cut in half is dropped.
    """

    def __init__(
        self,
        config: dict,
        workdir: Path,
        state: dict | None,
        trigger: Trigger | None,
        watch: t.Callable[[], bool] | None = None,
        *,
        executable: str = TAP,
        stdin: bytes | None = None,
    ) -> None:
        """``trigger`` sees each message as it is read; ``watch`` is polled meanwhile (e.g. the sandbox's log).

        The tap by default; ``executable=TARGET`` with ``stdin`` runs the target the same way.
        """
        self.config, self.workdir, self.state, self.trigger, self.watch = config, workdir, state, trigger, watch
        self.executable, self.stdin = executable, stdin
        self.messages: list[dict] = []
        self.per_stream: collections.Counter[str] = collections.Counter()
        self.killed = False
        self.code: int | None = None
        self.partial_line_dropped = False
        self.last_stream: str | None = None  # the stream of the last RECORD/SCHEMA read
        self.killed_in: str | None = None  # where the kill happened, as far as stdout shows

    def run(self, timeout: float = 120) -> KillableRun:
        self.workdir.mkdir(parents=True, exist_ok=True)
        name = Path(self.executable).name
        argv = [self.executable, "--config", str(write_json(self.workdir / f"{name}-config.json", self.config))]
        if self.state is not None:
            argv += ["--state", str(write_json(self.workdir / "state.json", self.state))]
        with (self.workdir / "stderr.log").open("wb") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, cwd=self.workdir,
                                    stdin=subprocess.PIPE if self.stdin is not None else subprocess.DEVNULL,
                                    env=plugin_env(self.workdir))  # fmt: skip
            if self.stdin is not None:
                threading.Thread(target=_feed, args=(proc, self.stdin), daemon=True).start()
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            watcher = threading.Thread(target=self._watch, args=(proc,), daemon=True)
            if self.watch is not None:
                watcher.start()
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    if not raw.endswith(b"\n"):  # the kill cut this line short: a target drops it too
                        self.partial_line_dropped = True
                        break
                    message = json.loads(raw)
                    self.messages.append(message)
                    if message.get("type") == "RECORD":
                        self.per_stream[message["stream"]] += 1
                    if message.get("type") in ("RECORD", "SCHEMA"):
                        self.last_stream = message["stream"]
                    if not self.killed and self.trigger is not None and self.trigger(message, self):
                        proc.kill()
                        self.killed, self.killed_in = True, self.last_stream or "(startup)"
                self.code = proc.wait()
            finally:
                timer.cancel()
                if watcher.is_alive():
                    watcher.join()
        return self

    def _watch(self, proc: subprocess.Popen) -> None:
        assert self.watch is not None
        while proc.poll() is None:
            if self.watch():
                proc.kill()
                self.killed, self.killed_in = True, self.last_stream or "(startup)"
                return
            time.sleep(0.002)

    @property
    def output(self) -> Output:
        return Output(self.messages)

    @property
    def stderr(self) -> str:
        return (self.workdir / "stderr.log").read_text(errors="backslashreplace")


# -- canary secrets ------------------------------------------------------------------------------------

CANARY_KEY = "pk_CANARYkey0a1b2c3d4e5f60718293a4b5c6d7"
CANARY_WRONG_KEY = "pk_CANARYwrong9f8e7d6c5b4a39281706f5e4d3"
CANARY_CLIENT_ID = "canary-app-id"  # not a secret: re-authorisation commands print it
CANARY_CLIENT_SECRET = "CANARYclientsecret-4c1f9e2a7b3d"


def canary_refresh_token(n: int) -> str:
    return f"CANARYrefresh{n:02d}-8d3b6f0e1a"


def canary_access_token(n: int) -> str:
    return f"CANARYaccess{n:02d}-2e7c9a4f5b"


def canaries(extra: t.Iterable[str] = ()) -> dict[str, bytes]:
    """label -> bytes that must never show: each secret, a distinctive piece of it, HTTP Basic credentials."""
    import base64

    secrets = {CANARY_KEY, CANARY_WRONG_KEY, CANARY_CLIENT_SECRET, *extra}
    secrets |= {canary_refresh_token(n) for n in range(20)} | {canary_access_token(n) for n in range(20)}
    found = {}
    for secret in secrets:
        found[secret] = secret.encode()
        found[f"piece of {secret}"] = secret[3:17].encode()  # a message showing part of it leaks too
    found["HTTP Basic credentials"] = base64.b64encode(f"{CANARY_CLIENT_ID}:{CANARY_CLIENT_SECRET}".encode())
    return found


def leaks_in(data: bytes | str, secrets: t.Mapping[str, bytes]) -> list[str]:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return [label for label, secret in secrets.items() if secret in data]
