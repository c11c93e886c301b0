"""The image of a release's Rasa server (agent/targets/docker/rasa_slots.py).

`rasa-gitops-rasa:<release>` is `model.rasa_image` plus the release's model
file and its rendered endpoints.yml/credentials.yml, built on the engine that
runs it from a context sent through the API (so also over SSH).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

from agent.secrets import Redactor, Secret
from agent.targets.base import DeployError, LogSink, ModelRef
from agent.targets.rasa_config import ServerConfig

IMAGE_REPOSITORY = "rasa-gitops-rasa"
LABEL_ROLE = "io.rasa-gitops.role"
LABEL_RELEASE = "io.rasa-gitops.release"
ROLE = "rasa-server"
IN_IMAGE = "/rasa-gitops/release"  # the release's model and config inside its image
DOCKERFILE = """\
FROM {base}
COPY release/ {in_image}/
"""


def build_release_image(client: Any, base: str, ref: ModelRef, config: ServerConfig,
                        log: LogSink, variant: str = "") -> str:
    """`rasa-gitops-rasa:<release>[-<variant>]`: `base` plus the release's model and config."""
    import docker.errors

    name = f"{ref.release_id}-{variant}" if variant else ref.release_id
    tag = f"{IMAGE_REPOSITORY}:{_tag_of(name)}"
    log(f"building {tag} from {base} with the model of release {ref.release_id}")
    with tempfile.TemporaryFile() as context:  # a model may be hundreds of MB
        _write_context(context, base, Path(ref.location), config)
        context.seek(0)
        try:
            client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True,
                                forcerm=True, labels={LABEL_ROLE: ROLE,
                                                      LABEL_RELEASE: ref.release_id})
        except docker.errors.BuildError as exc:
            lines = [str(part.get("stream") or part.get("error") or "").strip()
                     for part in exc.build_log if isinstance(part, dict)]
            tail = " | ".join(line for line in lines if line)[-600:]
            raise DeployError(f"cannot build {tag} from {base}: {exc.msg}"
                              f"{'; ' + tail if tail else ''}") from None
        except docker.errors.DockerException as exc:
            raise DeployError(f"cannot build {tag}: {explain(exc)}") from None
    return tag


def prune_release_images(client: Any, new_image: str, log: LogSink) -> None:
    """Keep the new image, the live one and the one tagged last before it (the
    previous release, for rollback once the switch is done); drop the rest.

    By tag time, not creation: a rollback rebuilds an old release's image
    from the build cache, which keeps its creation time but tags it anew."""
    import docker.errors

    images = client.images.list(name=IMAGE_REPOSITORY)
    in_use = {str(c.attrs.get("Image", "")) for c in client.containers.list(all=True)}
    keep = {i.id for i in images if i.id in in_use or new_image in i.tags}
    live = [_tagged(i) for i in images if i.id in in_use]
    earlier = [i for i in images if i.id not in keep and live and _tagged(i) < min(live)]
    if earlier:
        keep.add(max(earlier, key=_tagged).id)
    for image in images:
        if image.id in keep:
            continue
        ours = [tag for tag in image.tags if tag.startswith(f"{IMAGE_REPOSITORY}:")]
        # Also the digests it was pulled back by (a fleet's model.rasa_repository):
        # while one names it, removing our tags would not free it.
        pulled = [str(name) for name in image.attrs.get("RepoDigests") or []]
        for name in [*pulled, *ours]:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(name)
                log(f"removed old image {name}")


def _tagged(image: Any) -> str:
    """When the image was last tagged, comparable as text (RFC 3339 in UTC with
    its fraction cut to what it needs: padded to nanoseconds here)."""
    stamp = str((image.attrs.get("Metadata") or {}).get("LastTagTime") or "")
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}"


def _tag_of(release_id: str) -> str:
    """A Docker tag for a release id (tags allow [A-Za-z0-9_.-], 128 characters)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in release_id)
    return cleaned.lstrip(".-")[:128] or "release"


def _write_context(out: IO[bytes], base: str, model: Path, config: ServerConfig) -> None:
    """The build context: the Dockerfile and release/ (model, endpoints, credentials)."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", DOCKERFILE.format(base=base, in_image=IN_IMAGE).encode())
        # Readable by the image's user, whoever that is: rendered files are
        # 0600 on the agent's host, and COPY keeps the mode.
        for source, name in ((model, "model.tar.gz"), (config.endpoints, "endpoints.yml"),
                             (config.credentials, "credentials.yml")):
            info = tar.gettarinfo(str(source), arcname=f"release/{name}")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
            with source.open("rb") as data:
                tar.addfile(info, data)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def explain(exc: Exception, token: Secret | None = None) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    # An error about the container may quote its command line, token included.
    return Redactor([token.reveal()] if token is not None else [])(text)
