"""A Rasa 3.6.21 image for the tests of Rasa servers in containers.

It stands in for `rasa/rasa:3.6.21-full`, which the test machine can't pull
(there is no Docker Hub here): the bookworm base the other test images start
from (tests/support/base_images.py), plus this test venv (Rasa 3.6.21) and the
Python it was made from, each copied to the same absolute path as here (the
venv's shebangs and pyvenv.cfg name them).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any

from tests.support.base_images import ensure_debian_image, has_image
from tests.support.services import DockerEngine

RASA_REPOSITORY = "rasa-gitops-test/rasa"
# How the image is made, in its tag: bump it when that changes (2: the venv in
# two layers, site-packages/tensorflow in the second).
RECIPE = 2


def ensure_rasa_image(client: Any, log: Any = print) -> str:
    """The stand-in for rasa/rasa:3.6.21-full: ENTRYPOINT `rasa` and WORKDIR /app
    as there, but it runs as root. Made once, cached in the engine's data root
    like the SDK image."""
    venv = Path(sys.prefix)
    # .ci/test rebuilds the venv when its requirements change: so is the image.
    # RECIPE is in the tag too, so an image made the old way is made again.
    stamp = venv / ".rasa-gitops-stamp"
    version = stamp.read_text().strip() if stamp.is_file() else "local"
    tag = f"3.6.21-{version}-r{RECIPE}"
    image = f"{RASA_REPOSITORY}:{tag}"
    if has_image(client, image):
        return image
    base = ensure_debian_image(client, log)
    home = _venv_home(venv)
    rasa_exe = venv / "bin" / "rasa"
    if not rasa_exe.is_file() or home is None:
        raise RuntimeError(f"{venv} is not a venv with Rasa in it (no bin/rasa, pyvenv.cfg)")
    python = venv / "bin" / "python3"
    heavy = _heavy_part(venv)
    q = shlex.quote
    # Two layers of about 1.5 GB each, which a push (or pull) compresses (or
    # fetches) in parallel: one layer of it all took a core ~110 s to gzip.
    # Layer 1: the Python and the venv without `heavy`; bound read-only at
    # /src/N, copied to the same paths inside: a bind at the real path would be
    # the copy's own source. (pip makes no hard links between a venv's files, so
    # two `cp -a` make the same tree as one.)
    first = " && ".join([
        "set -e", "mkdir -p /app",
        f"mkdir -p {q(str(venv.parent))} {q(str(home.parent))}",
        f"cp -a /src/0 {q(str(venv))}", f"cp -a /src/1 {q(str(home))}",
        f"rm -rf {q(str(venv / heavy))}",
    ])
    # Layer 2: `heavy` (site-packages/tensorflow), its parent's mtime put back
    # (the rm and this copy changed it), then the checks on the whole image.
    second = " && ".join([
        "set -e",
        f"cp -a {q(f'/src/0/{heavy}')} {q(str(venv / heavy))}",
        f"touch -r {q(f'/src/0/{heavy.parent}')} {q(str(venv / heavy.parent))}",
        # Every shared library the interpreter and its standard modules need.
        f"! (ldd $(readlink -f {q(str(python))}) "
        f"{q(str(home))}/lib/python3*/lib-dynload/*.so 2>&1"
        " | grep -v -e _tkinter -e libX -e libtk -e libtcl | grep 'not found')",
        f"{q(str(python))} -c 'import rasa, sqlite3, ssl, ctypes, lzma, bz2'",
    ])
    log(f"making {image}: {venv} and {home} into {base}, {heavy} in a layer of its own")
    # Layer 1's image is left untagged: the final image's parent (removed with it).
    part = _commit_step(client, base, first, {str(venv): {"bind": "/src/0", "mode": "ro"},
                                              str(home): {"bind": "/src/1", "mode": "ro"}},
                        image)
    try:
        _commit_step(client, part, second, {str(venv): {"bind": "/src/0", "mode": "ro"}},
                     image, repository=RASA_REPOSITORY, tag=tag, changes=[
                         f'ENTRYPOINT ["{rasa_exe}"]', "CMD [\"--help\"]", "WORKDIR /app",
                         f"ENV PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin"])
    except BaseException:
        with contextlib.suppress(Exception):
            client.images.remove(part, force=True)
        raise
    import docker.errors

    for old in client.images.list(name=RASA_REPOSITORY):  # 3 GB each: one is enough
        for old_tag in old.tags:
            if old_tag != image:
                # A stopped container may still use it (409): it goes another time.
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(old_tag)
    return image


def _commit_step(client: Any, source: str, script: str, volumes: dict[str, Any], image: str,
                 **commit: Any) -> str:
    """Run `script` (sh) in a container of `source`, without network, and commit
    what it changed as one layer (`commit`: docker-py's Container.commit); the
    committed image's id."""
    container = client.containers.run(source, ["sh", "-c", script], detach=True,
                                      network_mode="none", volumes=volumes)
    try:
        status = container.wait(timeout=1800)
        if status.get("StatusCode") != 0:
            output = container.logs().decode("utf-8", "replace")[-3000:]
            raise RuntimeError(f"making {image} failed: {output}")
        return str(container.commit(**commit).id)
    finally:
        container.remove(force=True)


def _heavy_part(venv: Path) -> Path:
    """site-packages/tensorflow (1.5 of the venv's 2.8 GB), relative to `venv`."""
    found = sorted(venv.glob("lib/python3*/site-packages/tensorflow"))
    if not found:
        raise RuntimeError(f"{venv} has no site-packages/tensorflow (Rasa 3.6's DIET/TED need it)")
    return found[0].relative_to(venv)


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
