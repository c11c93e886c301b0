"""The test images, made without Docker Hub and cached in the engine's data root.

- the Debian base: a bookworm rootfs with python3 from `mmdebstrap`,
  `docker import`ed;
- `sdk_base_image`: rasa-sdk from wheels downloaded from PyPI once, on that base.

The Rasa image is tests/support/rasa_image.py. bench/image_build.py uses these too.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.support.services import DOCKER_CACHE, DockerEngine

SDK_VERSION = "3.11.2"
DEBIAN_IMAGE = "rasa-gitops-test/debian:bookworm"
SDK_IMAGE = f"rasa-gitops-test/rasa-sdk:{SDK_VERSION}"

SDK_DOCKERFILE = """\
FROM {debian}
RUN python3 -m venv /opt/venv
COPY wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels \\
    rasa-sdk=={version} && rm -rf /tmp/wheels
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
EXPOSE 5055
CMD ["python3", "-m", "rasa_sdk", "--actions", "actions"]
"""



def has_image(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_debian_image(client: Any, log: Any = print) -> str:
    """The bookworm base the test images are made from (mmdebstrap, docker import)."""
    work = DOCKER_CACHE / "base"
    work.mkdir(parents=True, exist_ok=True)
    if not has_image(client, DEBIAN_IMAGE):
        rootfs = work / "bookworm.tar"
        if not rootfs.is_file():
            log("mmdebstrap: making a bookworm rootfs with python3")
            partial = work / "bookworm.partial.tar"  # mmdebstrap picks the format by suffix
            subprocess.run(
                ["mmdebstrap", "--variant=essential", "--quiet",
                 "--include=python3-venv,ca-certificates,libstdc++6",
                 "--dpkgopt=path-exclude=/usr/share/man/*",
                 "--dpkgopt=path-exclude=/usr/share/doc/*",
                 "--dpkgopt=path-exclude=/usr/share/locale/*",
                 "--dpkgopt=path-exclude=/usr/share/info/*",
                 "bookworm", str(partial)],
                check=True, capture_output=True,
            )
            partial.rename(rootfs)
        repository, tag = DEBIAN_IMAGE.split(":")
        # docker-py's file and stream imports are broken (path sent as a URL; chunked
        # upload refused); ~150 MB in memory once is fine.
        client.api.import_image_from_data(rootfs.read_bytes(), repository=repository, tag=tag)
    return DEBIAN_IMAGE


def ensure_sdk_image(client: Any, log: Any = print) -> str:
    """The rasa-sdk base image, made once and cached in the engine's data root."""
    if has_image(client, SDK_IMAGE):
        return SDK_IMAGE
    ensure_debian_image(client, log)
    context = DOCKER_CACHE / "base" / "sdk-context"
    wheels = context / "wheels"
    if not any(wheels.glob("rasa_sdk-*.whl")):
        log(f"pip download rasa-sdk=={SDK_VERSION} for Python 3.11")
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", f"rasa-sdk=={SDK_VERSION}",
             "-d", str(wheels), "--python-version", "3.11", "--only-binary=:all:",
             "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux_2_28_x86_64", "--implementation", "cp"],
            check=True, capture_output=True,
        )
    (context / "Dockerfile").write_text(
        SDK_DOCKERFILE.format(debian=DEBIAN_IMAGE, version=SDK_VERSION))
    log(f"building {SDK_IMAGE}")
    client.images.build(path=str(context), tag=SDK_IMAGE, rm=True, forcerm=True)
    return SDK_IMAGE


def sdk_base_image_in(docker_engine: DockerEngine) -> str:
    """The rasa-sdk base image in this engine (made on first use)."""
    client = docker_engine.client()
    try:
        return ensure_sdk_image(client)
    finally:
        client.close()
