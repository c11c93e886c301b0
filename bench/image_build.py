"""Action-server image build time: an action-only change with a warm cache against a
cold build, side by side, in one run on one machine and one Docker engine.

Both build the example bot with a requirements file (numpy, tabulate, pytz,
python-dateutil) through the agent's own build code
(`agent.image.build.build_image`). The wheels are downloaded on the host once
and installed with `--no-index` (build steps here can't verify PyPI's TLS
through this sandbox's proxy), by a Dockerfile with the same layer order as the
agent's default (requirements before actions):
- cold: `nocache`, so the requirements are installed again, as on a fresh host;
- warm: the action code changes (a new comment each time) and the build cache
  holds the requirements layer, which is what a release that touches only the
  actions gets.
The engine is Debian's dockerd started just for this run (overlay2 where the
kernel has it, else vfs; RASA_GITOPS_DOCKER_STORAGE overrides; builds use the
host network, as this engine has no bridge), with the rasa-sdk base image made
without Docker Hub (mmdebstrap) and cached.

    /root/.cache/rasa-gitops/rasa310/bin/python bench/image_build.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.image.build import build_image  # noqa: E402
from agent.image.context import assemble  # noqa: E402
from agent.image.dockerfile import ImageSettings  # noqa: E402
from tests.support.base_images import ensure_sdk_image  # noqa: E402
from tests.support.services import (  # noqa: E402
    clean_engine,
    remove_run_dir,
    start_dockerd,
    stop_process,
    storage_driver,
)

REQUIREMENTS = "numpy==1.26.4\ntabulate==0.9.0\npython-dateutil==2.9.0.post0\npytz==2024.1\n"
DOCKERFILE = """\
FROM {base}
WORKDIR /app
USER root
COPY wheels /tmp/wheels
COPY actions/requirements.txt /app/requirements.txt
RUN python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheels \\
    -r /app/requirements.txt && rm -rf /tmp/wheels
COPY actions /app/actions
USER 1001
ENTRYPOINT ["python3", "-m", "rasa_sdk"]
CMD ["--actions", "actions", "--port", "5055"]
"""
WHEELS = Path.home() / ".cache" / "rasa-gitops" / "docker" / "bench-wheels"


def download_wheels() -> None:
    if any(WHEELS.glob("numpy-*.whl")):
        return
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-r", "/dev/stdin", "-d", str(WHEELS),
         "--python-version", "3.11", "--only-binary=:all:", "--implementation", "cp",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"],
        input=REQUIREMENTS.encode(), check=True,
    )


def timed_build(client: object, bot: Path, base: str, tag: str, no_cache: bool) -> float:
    context = assemble(bot, ImageSettings(base_image=base))
    start = time.perf_counter()
    build_image(client, context, repository="bench-image-build", commit=tag, source="bench",
                log=lambda line: None, no_cache=no_cache, network_mode="host")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run_dir = Path(f"/tmp/rgb-{os.getpid()}")
    engine, proc = start_dockerd(run_dir)
    client = engine.client()
    work = Path(tempfile.mkdtemp(prefix="bench-image-"))
    try:
        clean_engine(client)
        base = ensure_sdk_image(client, log=lambda line: print(f"  ({line})"))
        bot = work / "coffeebot"
        shutil.copytree(REPO / "examples" / "coffeebot", bot)
        download_wheels()
        (bot / "actions" / "requirements.txt").write_text(REQUIREMENTS)
        shutil.copytree(WHEELS, bot / "wheels")
        (bot / "Dockerfile").write_text(DOCKERFILE.format(base=base))
        actions = bot / "actions" / "actions.py"
        original = actions.read_text()
        # Warm-up: pulls nothing (no Hub), but fills the cache for the warm runs.
        timed_build(client, bot, base, "warmup", no_cache=False)
        cold: list[float] = []
        warm: list[float] = []
        for i in range(args.repeat):
            cold.append(timed_build(client, bot, base, f"cold{i}", no_cache=True))
            actions.write_text(original + f"\n# change {uuid.uuid4()}\n")
            warm.append(timed_build(client, bot, base, f"warm{i}", no_cache=False))
        cold_median, warm_median = statistics.median(cold), statistics.median(warm)
        print(f"storage driver: {storage_driver()}, {args.repeat} run(s) each, "
              f"{os.cpu_count()} CPU(s)")
        print(f"{'build':<44}{'median s':>10}{'runs s':>28}")
        print(f"{'cold (no cache, requirements installed)':<44}{cold_median:>10.1f}"
              f"{', '.join(f'{t:.1f}' for t in cold):>28}")
        print(f"{'warm, action-only change (cached layer)':<44}{warm_median:>10.1f}"
              f"{', '.join(f'{t:.1f}' for t in warm):>28}")
        print(f"warm / cold: {warm_median / cold_median:.2f}x")
    finally:
        clean_engine(client)
        for image in client.images.list(name="bench-image-build"):
            client.images.remove(image.id, force=True)
        client.close()
        stop_process(proc)
        remove_run_dir(run_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
