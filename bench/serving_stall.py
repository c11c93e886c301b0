"""Chat latency during promotions: `put_model` against `blue_green`, in one run.

Why: Rasa 3.6 loads a model on its event loop, so `PUT /model` on the live
server (model.serving: put_model) holds every chat until the load is done.
The blue/green target (model.serving: blue_green) loads each model in a new
server beside the live one and switches HAProxy only once it is warm. This
bench measures what a user sees in both, with a real DIET/TED model.

What it does: trains examples/orderbot twice into a temporary folder (model A,
and model B with another `utter_greet` text; both trainings share one
RASA_CACHE_DIRECTORY, so the second is quick). Then, for each mode in turn, it
starts the target as agent/targets/factory.py builds it (managed server, state
in the temporary folder, a dummy action endpoint: orderbot has no custom
actions) with model A, and runs a client that opens `--rate` conversations a
second on the stable URL (REST channel, each a new sender saying "hello"; one
a second is instead a customer going through the bot's order form, its two
turns 3 s apart: the second turn gets the form's next question only if the
tracker kept the first, so the table counts the conversations a switch lost).
After `--baseline` seconds of idle chat it trains bot B once beside the live
server at each `--training` priority (as a release's train step does: through
hooks.core.process.run, background = its own session at the lowest CPU weight),
then does `--switches` activations, alternating
B, A, B, ... (the default 20 = 10 promotions and 10 rollbacks), `--pause`
seconds apart. Every reply's latency and every error is recorded.

Latency is counted from the moment a request was due, not when a thread got to
send it, so requests held up behind a stall count their whole wait.

Run: /root/.cache/rasa-gitops/rasa310/bin/python bench/serving_stall.py [--switches 20] [--rate 20]
(quick check: --switches 2). It needs Rasa 3.6 and HAProxy, takes two cores
for minutes, and leaves nothing running.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.targets.base import ModelRef, ModelTarget  # noqa: E402
from agent.targets.front_proxy import free_port  # noqa: E402
from agent.targets.local_process import port_open  # noqa: E402
from agent.targets.rasa_blue_green import BlueGreenRasaTarget  # noqa: E402
from agent.targets.rasa_http import RasaHttpModelTarget  # noqa: E402
from hooks.core.child_env import QUIET_RASA_ENV  # noqa: E402
from hooks.core.process import rasa_command, run  # noqa: E402

HOST = "127.0.0.1"
BOT = REPO / "examples" / "orderbot"
GREET_A = "Hi! Want a coffee?"
GREET_B = "Hello there! Want a coffee?"
# Nothing listens here: orderbot has no custom actions, so Rasa never calls it.
DUMMY_ACTIONS = "http://127.0.0.1:9/webhook"
MODES = ("put_model", "blue_green")


@dataclass
class Record:
    """What the client saw in one mode; appended to from many threads (list.append is atomic)."""

    latencies: list[tuple[float, float]] = field(default_factory=list)  # (due, seconds)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (due, what)
    switches: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    # (start, end, priority) of each training run while the client chats
    trainings: list[tuple[float, float, str]] = field(default_factory=list)
    forms: list[tuple[float, bool]] = field(default_factory=list)  # (due, finished whole)
    said: list[tuple[float, str]] = field(default_factory=list)  # (when, the target's log line)
    # (when, /proc/stat's cpu line) once a second: how loaded the host was
    cpu: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)


# /proc/stat's "cpu" columns, in jiffies of all cores together (man 5 proc).
USER, NICE, SYSTEM, IDLE, IOWAIT, IRQ, SOFTIRQ, STEAL = range(8)


def cpu_counters() -> tuple[int, ...]:
    """The host's CPU time so far: the first 8 columns of /proc/stat's cpu line
    (empty where there is no /proc)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return tuple(int(v) for v in stat.readline().split()[1:9])
    except OSError:
        return ()


def sample_cpu(record: Record, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        record.cpu.append((time.monotonic(), cpu_counters()))


def host_load(record: Record, inside: Callable[[float], bool]) -> tuple[str, str, str]:
    """Busy, niced and stolen shares of all cores over the samples `inside`
    the phase: busy counts everything but idle and iowait (niced and stolen
    included), niced is the background work (a training at nice 19, a loading
    server at nice 10), steal is time the hypervisor gave another guest."""
    spent = [0] * 8
    for (_, before), (when, after) in itertools.pairwise(record.cpu):
        if inside(when) and len(before) == len(after) == 8:
            spent = [total + b - a for total, a, b in zip(spent, before, after, strict=True)]
    whole = sum(spent)
    if whole == 0:
        return ("-", "-", "-")
    busy = whole - spent[IDLE] - spent[IOWAIT]
    shares = [f"{100 * part / whole:.0f}%" for part in (busy, spent[NICE], spent[STEAL])]
    return shares[0], shares[1], shares[2]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# What `--tracker-store memory` writes as the bot's endpoints.yml: Rasa's own
# in-memory store by its class path (nothing survives a restart or a switch).
IN_MEMORY_ENDPOINTS = "tracker_store:\n  type: rasa.core.tracker_store.InMemoryTrackerStore\n"
# `--tracker-store redis`: a redis-server the bench starts, as both stores
# (what a bot with this traffic names; blue and green share it).
REDIS_ENDPOINTS = ("tracker_store:\n  type: redis\n  url: 127.0.0.1\n  port: {port}\n"
                   "  db: 1\nlock_store:\n  type: redis\n  url: 127.0.0.1\n  port: {port}\n"
                   "  db: 2\n")
# Once a second a customer goes through orderbot's form across 3 s: the second
# turn only gets its answer if the tracker kept the first (a switch between
# the two must not lose the conversation).
FORM_TURNS = (("I want a coffee", "Small or large?"), ("large", "With milk?"))
FORM_GAP = 3.0


def train(rasa: list[str], tmp: Path, tracker_store: str, redis_port: int
          ) -> tuple[Path, Path]:
    """Models A and B of orderbot (B greets differently), and B's bot folder."""
    if not (BOT / "config.yml").is_file():
        sys.exit(f"{BOT} is missing: this bench needs examples/orderbot")
    env = {**os.environ, **QUIET_RASA_ENV, "RASA_CACHE_DIRECTORY": str(tmp / "train-cache")}
    models = []
    for name, greet in (("a", GREET_A), ("b", GREET_B)):
        bot = tmp / f"bot-{name}"
        shutil.copytree(BOT, bot)
        domain = bot / "domain.yml"
        text = domain.read_text(encoding="utf-8")
        if GREET_A not in text:
            sys.exit(f"{BOT / 'domain.yml'}: utter_greet is no longer {GREET_A!r}; "
                     "update the bench")
        domain.write_text(text.replace(GREET_A, greet), encoding="utf-8")
        if tracker_store == "memory":
            (bot / "endpoints.yml").write_text(IN_MEMORY_ENDPOINTS, encoding="utf-8")
        elif tracker_store == "redis":
            (bot / "endpoints.yml").write_text(REDIS_ENDPOINTS.format(port=redis_port),
                                               encoding="utf-8")
        print(f"training model {name.upper()} of orderbot ...", file=sys.stderr)
        started = time.monotonic()
        done = subprocess.run(
            [*rasa, "train", "--config", "config.yml", "--domain", "domain.yml", "--data",
             "data", "--out", str(tmp / "models"), "--fixed-model-name", f"orderbot-{name}"],
            cwd=bot, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            sys.exit(f"rasa train failed:\n{(done.stdout + done.stderr)[-3000:]}")
        print(f"  trained in {time.monotonic() - started:.0f} s", file=sys.stderr)
        models.append(tmp / "models" / f"orderbot-{name}.tar.gz")
    return models[0], models[1]


def build_target(mode: str, rasa: list[str], state_dir: Path, port: int) -> ModelTarget:
    """As agent/targets/factory.py builds each (its defaults for the rest)."""
    url = f"http://{HOST}:{port}"
    if mode == "blue_green":
        return BlueGreenRasaTarget(url=url, token=None, state_dir=state_dir / "rasa-blue-green",
                                   rasa_argv=rasa, action_endpoint=DUMMY_ACTIONS,
                                   load_timeout=900.0, drain_timeout=30.0, warmup=["hello"])
    return RasaHttpModelTarget(url=url, token=None, state_dir=state_dir / "rasa-server",
                               rasa_argv=rasa, manage_server=True,
                               action_endpoint=DUMMY_ACTIONS, load_timeout=900.0)


def train_beside(rasa: list[str], bot: Path, out: Path, priority: str) -> None:
    """A forced `rasa train` of the bot as a release's training step runs it:
    through hooks.core.process.run, in the background or not."""
    done = run([*rasa, "train", "--force", "--config", "config.yml", "--domain", "domain.yml",
                "--data", "data", "--out", str(out)], cwd=bot, timeout=3600,
               background=priority == "background")
    if done.returncode != 0:
        sys.exit(f"rasa train failed:\n{done.output[-3000:]}")


def converse(url: str, sender: str, due: float, record: Record) -> None:
    """One conversation: a new sender says hello; its latency or its error."""
    try:
        answer = requests.post(f"{url}/webhooks/rest/webhook",
                               json={"sender": sender, "message": "hello"}, timeout=300)
        elapsed = time.monotonic() - due
        if answer.status_code != 200:
            record.errors.append((due, f"HTTP {answer.status_code}"))
        elif not any(item.get("text") in (GREET_A, GREET_B) for item in answer.json()):
            record.errors.append((due, f"unexpected reply {answer.text[:80]!r}"))
        else:
            record.latencies.append((due, elapsed))
    except (requests.RequestException, ValueError) as exc:
        record.errors.append((due, type(exc).__name__))


def order(url: str, sender: str, due: float, record: Record) -> None:
    """One customer through the form, FORM_GAP seconds between the turns; each
    turn's latency, and whether the second got the answer only a kept tracker gives."""
    whole = True
    for turn, (text, expected) in enumerate(FORM_TURNS):
        if turn:
            time.sleep(max(0.0, due + FORM_GAP * turn - time.monotonic()))
        sent = due + FORM_GAP * turn
        try:
            answer = requests.post(f"{url}/webhooks/rest/webhook",
                                   json={"sender": sender, "message": text}, timeout=300)
            if answer.status_code != 200:
                record.errors.append((sent, f"HTTP {answer.status_code}"))
                return
            record.latencies.append((sent, time.monotonic() - sent))
            whole = whole and [m.get("text") for m in answer.json()] == [expected]
        except (requests.RequestException, ValueError) as exc:
            record.errors.append((sent, type(exc).__name__))
            return
    record.forms.append((due, whole))


def client(url: str, mode: str, rate: float, record: Record, stop: threading.Event) -> None:
    """Opens `rate` conversations a second until `stop`, each on its own thread
    from a large pool: a stalled server must not slow the sending down. One of
    them each second is a customer going through the form (`order`)."""
    period = 1.0 / rate
    every = max(1, round(rate))
    with ThreadPoolExecutor(max_workers=512) as pool:
        due = time.monotonic()
        n = 0
        while not stop.is_set():
            time.sleep(max(0.0, due - time.monotonic()))
            talk = order if n % every == 0 else converse
            pool.submit(talk, url, f"bench-{mode}-{n}", due, record)
            n += 1
            due += period
    # Leaving the with block waits for every conversation still in flight.


def run_mode(mode: str, rasa: list[str], tmp: Path, refs: tuple[Path, Path], bot_dirs:
             tuple[Path, Path], args: argparse.Namespace) -> Record:
    port = free_port(HOST)
    target = build_target(mode, rasa, tmp / mode, port)
    url = f"http://{HOST}:{port}"
    record = Record()

    def log(line: str) -> None:
        record.said.append((time.monotonic(), line))
        print(f"  [{mode}] {line}", file=sys.stderr)

    stop = threading.Event()
    thread: threading.Thread | None = None
    try:
        pairs = enumerate(zip(refs, bot_dirs, strict=True))
        uploaded: list[ModelRef] = [target.upload(f"{mode}-{i}", model, log, bot_dir=bot)
                                    for i, (model, bot) in pairs]
        started = time.monotonic()
        target.activate(uploaded[0], log)
        log(f"serving model A after {time.monotonic() - started:.0f} s")
        thread = threading.Thread(target=client, args=(url, mode, args.rate, record, stop))
        thread.start()
        # From the client's start: the idle phase doesn't count model A's load.
        threading.Thread(target=sample_cpu, args=(record, stop), daemon=True).start()
        time.sleep(args.baseline)
        for priority in args.training:
            begin = time.monotonic()
            train_beside(rasa, bot_dirs[1], tmp / mode / f"train-{priority}", priority)
            record.trainings.append((begin, time.monotonic(), priority))
            log(f"a {priority}-priority training beside the live server took "
                f"{time.monotonic() - begin:.0f} s")
            time.sleep(args.pause)
        switches = switches_of(mode, args)
        for i in range(switches):
            begin = time.monotonic()
            target.activate(uploaded[(i + 1) % 2], log)
            record.switches.append((begin, time.monotonic()))
            log(f"switch {i + 1}/{switches} to model {'BA'[i % 2]} took "
                f"{time.monotonic() - begin:.1f} s")
            time.sleep(args.pause)
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        target.stop_all(log)
    return record


def switches_of(mode: str, args: argparse.Namespace) -> int:
    if mode == "put_model" and args.put_model_switches is not None:
        return int(args.put_model_switches)
    return int(args.switches)


def _between(begin: float, end: float, due: float) -> bool:
    return begin <= due < end


def rows(mode: str, record: Record) -> list[tuple[str, ...]]:
    first = record.switches[0][0] if record.switches else float("inf")
    chat_start = record.trainings[0][0] if record.trainings else first
    phases: dict[str, Callable[[float], bool]] = {
        "idle": lambda due: due < chat_start,
    }
    for begin, end, priority in record.trainings:
        phases[f"train {priority[:4]}"] = functools.partial(_between, begin, end)
    # From the first switch on, the last pause included: nothing is left out.
    phases["switching"] = lambda due: first <= due
    result: list[tuple[str, ...]] = []
    for phase, inside in phases.items():
        values = [seconds * 1000 for due, seconds in record.latencies if inside(due)]
        errors = sum(1 for due, _ in record.errors if inside(due))
        if values:
            stats = (f"{statistics.median(values):.0f}", f"{percentile(values, 0.99):.0f}",
                     f"{max(values):.0f}")
        else:
            stats = ("-", "-", "-")
        forms = [whole for due, whole in record.forms if inside(due)]
        lost = f"{forms.count(False)}/{len(forms)}"
        result.append((mode, phase, str(len(values) + errors), str(errors), *stats, lost,
                       *host_load(record, inside)))
    durations = [end - begin for begin, end in record.switches]
    mean = f"{statistics.mean(durations):.1f}" if durations else "-"
    result.append((mode, "switch s", f"n={len(durations)}", "", f"mean {mean}", "",
                   f"max {max(durations):.1f}" if durations else "-", "", "", "", ""))
    return result


def slowest(mode: str, record: Record, count: int = 8) -> list[str]:
    """The slowest replies from the first switch on: where in which switch each
    was due, and what the target last logged before it (what it was doing)."""
    if not record.switches:
        return []
    first = record.switches[0][0]
    late = sorted(((seconds, due) for due, seconds in record.latencies if due >= first),
                  reverse=True)[:count]
    lines = []
    for seconds, due in late:
        where = next((f"switch {i + 1} +{due - begin:.1f} s of {end - begin:.1f} s"
                      for i, (begin, end) in enumerate(record.switches) if begin <= due < end),
                     "between switches")
        doing = [line for when, line in record.said if when <= due]
        lines.append(f"  [{mode}] {seconds * 1000:.0f} ms, due in {where}; the target had "
                     f"last said: {doing[-1][:90] if doing else '-'}")
    return lines


@contextlib.contextmanager
def redis_for(tracker_store: str, tmp: Path) -> Iterator[int]:
    """A redis-server on a free loopback port for `--tracker-store redis` (0 otherwise)."""
    if tracker_store != "redis":
        yield 0
        return
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = free_port(HOST)
    proc = subprocess.Popen([server, "--bind", HOST, "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open(HOST, port):
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("redis-server did not start")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--switches", type=int, default=20,
                        help="activations per mode, alternating B, A, ... (default 20)")
    parser.add_argument("--put-model-switches", type=int, default=None,
                        help="activations for put_model, if fewer (each stalls the same "
                             "way for a whole load; default: --switches)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="new conversations per second (default 20)")
    parser.add_argument("--baseline", type=float, default=5.0,
                        help="seconds of chat before the first switch (default 5)")
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds between two switches (default 2)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--training", nargs="*", choices=("background", "normal"),
                        default=["background"],
                        help="before the switches, train the bot once at each of these "
                             "priorities while chatting (default: background; none: "
                             "--training with no value)")
    parser.add_argument("--tracker-store", choices=("default", "memory", "redis"),
                        default="default",
                        help="default: the bot has none, so blue_green serves it with the "
                             "agent's SQLite store; memory: the bot names Rasa's in-memory "
                             "store (what put_model's server always uses); redis: a "
                             "redis-server the bench starts, as tracker and lock store")
    parser.add_argument("--rasa", help="how to run Rasa 3.6 (default: found as the hooks do)")
    args = parser.parse_args()
    rasa = args.rasa.split() if args.rasa else rasa_command()
    if "blue_green" in args.modes and shutil.which("haproxy") is None:
        sys.exit("haproxy is not on PATH (Debian: apt-get install haproxy)")
    # Short path: HAProxy's admin socket lives under it (108-byte limit).
    with tempfile.TemporaryDirectory(prefix="stall-", dir="/tmp") as name, \
            redis_for(args.tracker_store, Path(name)) as redis_port:
        tmp = Path(name)
        model_a, model_b = train(rasa, tmp, args.tracker_store, redis_port)
        table = []
        for mode in args.modes:
            record = run_mode(mode, rasa, tmp, (model_a, model_b),
                              (tmp / "bot-a", tmp / "bot-b"), args)
            table += rows(mode, record)
            print("\n".join(slowest(mode, record)), file=sys.stderr)
            for due, what in record.errors[:5]:
                print(f"  [{mode}] error at +{due - record.switches[0][0]:.1f} s: {what}"
                      if record.switches else f"  [{mode}] error: {what}", file=sys.stderr)
    counts = ", ".join(f"{mode} {switches_of(mode, args)}" for mode in args.modes)
    print(f"\n{args.rate:.0f} new conversations/s, tracker store: {args.tracker_store}, "
          f"switches: {counts} ({args.pause:.0f} s apart); latency in ms")
    print(f"one customer a second goes through the form, turns {FORM_GAP:.0f} s apart; "
          "lost: of those started in the phase, how many lost their form")
    print(f"host CPU over the phase, share of all {os.cpu_count()} cores: busy (niced and "
          "stolen included), niced (training, a loading server), stolen by the hypervisor")
    header = ("mode", "phase", "count", "errors", "p50", "p99", "max", "lost", "busy",
              "niced", "stolen")
    widths = (12, 11, 8, 8, 9, 9, 9, 9, 6, 7, 7)
    for line in (header, *table):
        print("".join(f"{cell:<{width}}" for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
