"""The latency the front proxy (HAProxy) adds to a request, at 50 requests/s.

The upstream is a tiny threaded Python HTTP server that answers with its name
(tests/support/tiny_http.py), not Rasa: this measures the hop through HAProxy
alone. Rasa's own reply time (tens of milliseconds for a light model) comes on
top of it either way.

Both paths run side by side in one run, interleaved: every 1/rate seconds one
request goes straight to the upstream and one through the proxy, so each path
sees `rate` requests/s under the same machine load. Each path is measured with
a kept-alive connection (as a channel or a browser keeps one) and with a new
connection per request.

Run: /root/.cache/rasa-gitops/rasa310/bin/python bench/front_proxy.py [--seconds 20] [--rate 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.targets.front_proxy import FrontProxy, Upstream  # noqa: E402
from agent.targets.local_process import free_port  # noqa: E402
from tests.support.tiny_http import tiny_server  # noqa: E402

HOST = "127.0.0.1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(session: requests.Session | None, url: str) -> float:
    started = time.perf_counter()
    if session is not None:
        answer = session.get(url, timeout=5)
    else:
        answer = requests.get(url, timeout=5, headers={"Connection": "close"})
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed


def measure(direct: str, proxied: str, seconds: float, rate: float, keep_alive: bool
            ) -> dict[str, list[float]]:
    sessions = ({"direct": requests.Session(), "proxy": requests.Session()} if keep_alive
                else {"direct": None, "proxy": None})
    urls = {"direct": direct, "proxy": proxied}
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    for name in urls:  # warm the connections and HAProxy's first request
        timed(sessions[name], urls[name])
    period = 1.0 / rate
    next_at = time.perf_counter()
    end = next_at + seconds
    turn = 0
    while next_at < end:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        # Alternate which path goes first, so neither always runs second.
        order = ("direct", "proxy") if turn % 2 == 0 else ("proxy", "direct")
        for name in order:
            times[name].append(timed(sessions[name], urls[name]))
        turn += 1
        next_at += period
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, \
            tiny_server("upstream") as port:
        proxy = FrontProxy(listen_host=HOST, listen_port=free_port(),
                           state_dir=Path(tmp) / "proxy")
        proxy.ensure_running(lambda line: None)
        try:
            proxy.switch(Upstream("blue", HOST, port), lambda line: None)
            direct = f"http://{HOST}:{port}/webhooks/rest/webhook"
            proxied = f"http://{HOST}:{proxy.listen_port}/webhooks/rest/webhook"
            print(f"{args.rate:.0f} requests/s per path for {args.seconds:.0f} s, "
                  "direct and through HAProxy interleaved; times in ms")
            print(f"{'connection':<16}{'path':<8}{'n':>6}{'p50':>8}{'p99':>8}{'max':>8}")
            for keep_alive in (True, False):
                times = measure(direct, proxied, args.seconds, args.rate, keep_alive)
                label = "kept-alive" if keep_alive else "new per request"
                for name, values in times.items():
                    print(f"{label:<16}{name:<8}{len(values):>6}"
                          f"{statistics.median(values) * 1000:>8.2f}"
                          f"{percentile(values, 0.99) * 1000:>8.2f}"
                          f"{max(values) * 1000:>8.2f}")
                p50 = statistics.median(times["proxy"]) - statistics.median(times["direct"])
                p99 = percentile(times["proxy"], 0.99) - percentile(times["direct"], 0.99)
                print(f"{label:<16}{'added':<8}{'':>6}{p50 * 1000:>8.2f}{p99 * 1000:>8.2f}")
        finally:
            proxy.stop(lambda line: None)


if __name__ == "__main__":
    main()
