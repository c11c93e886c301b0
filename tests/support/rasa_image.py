"""A Rasa 3.6.21 image for the tests of Rasa servers in containers.

It stands in for `rasa/rasa:3.6.21-full`, which the test machine can't pull
(there is no Docker Hub here): the bookworm base the other test images start
from (tests/support/base_images.py), plus this test venv (Rasa 3.6.21) and the
Python it was made from, each copied to the same absolute path as here (the
venv's shebangs and pyvenv.cfg name them).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from tests.support.base_images import ensure_debian_image, has_image
from tests.support.services import DockerEngine

RASA_REPOSITORY = "rasa-gitops-test/rasa"


def ensure_rasa_image(client: Any, log: Any = print) -> str:
    """The stand-in for rasa/rasa:3.6.21-full: ENTRYPOINT `rasa` and WORKDIR /app
    as there, but it runs as root. Made once, cached in the engine's data root
    like the SDK image."""
    venv = Path(sys.prefix)
    # .ci/test rebuilds the venv when its requirements change: so is the image.
    stamp = venv / ".rasa-gitops-stamp"
    version = stamp.read_text().strip() if stamp.is_file() else "local"
    image = f"{RASA_REPOSITORY}:3.6.21-{version}"
    if has_image(client, image):
        return image
    base = ensure_debian_image(client, log)
    home = _venv_home(venv)
    rasa_exe = venv / "bin" / "rasa"
    if not rasa_exe.is_file() or home is None:
        raise RuntimeError(f"{venv} is not a venv with Rasa in it (no bin/rasa, pyvenv.cfg)")
    python = venv / "bin" / "python3"
    # Bound read-only at /src/N, copied to the same paths inside: a bind at the
    # real path would be the copy's own source.
    script = " && ".join([
        "set -e", "mkdir -p /app",
        f"mkdir -p {shlex.quote(str(venv.parent))} {shlex.quote(str(home.parent))}",
        f"cp -a /src/0 {shlex.quote(str(venv))}", f"cp -a /src/1 {shlex.quote(str(home))}",
        # Every shared library the interpreter and its standard modules need.
        f"! (ldd $(readlink -f {shlex.quote(str(python))}) "
        f"{shlex.quote(str(home))}/lib/python3*/lib-dynload/*.so 2>&1"
        " | grep -v -e _tkinter -e libX -e libtk -e libtcl | grep 'not found')",
        f"{shlex.quote(str(python))} -c 'import rasa, sqlite3, ssl, ctypes, lzma, bz2'",
    ])
    log(f"making {image}: {venv} and {home} into {base}")
    container = client.containers.run(
        base, ["sh", "-c", script], detach=True, network_mode="none",
        volumes={str(venv): {"bind": "/src/0", "mode": "ro"},
                 str(home): {"bind": "/src/1", "mode": "ro"}})
    try:
        status = container.wait(timeout=1800)
        if status.get("StatusCode") != 0:
            output = container.logs().decode("utf-8", "replace")[-3000:]
            raise RuntimeError(f"making {image} failed: {output}")
        container.commit(repository=RASA_REPOSITORY, tag=image.split(":")[1], changes=[
            f'ENTRYPOINT ["{rasa_exe}"]', "CMD [\"--help\"]", "WORKDIR /app",
            f"ENV PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin"])
    finally:
        container.remove(force=True)
    for old in client.images.list(name=RASA_REPOSITORY):  # 3 GB each: one is enough
        for tag in old.tags:
            if tag != image:
                client.images.remove(tag)
    return image


def _venv_home(venv: Path) -> Path | None:
    """The Python installation a venv was made from (pyvenv.cfg `home` is its bin/)."""
    try:
        lines = (venv / "pyvenv.cfg").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).resolve().parent
    return None


def rasa_image_in(docker_engine: DockerEngine) -> str:
    """The stand-in Rasa image in this engine (made on first use)."""
    client = docker_engine.client()
    try:
        return ensure_rasa_image(client)
    finally:
        client.close()
