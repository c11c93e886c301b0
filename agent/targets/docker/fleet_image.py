"""Where the replicas of a Swarm fleet (agent/targets/docker/rasa_fleet.py) get
the release's Rasa image, and so which nodes they may run on.

- **Without `model.rasa_repository`** the image exists only where it was built:
  on the engine the agent reaches. The replicas are placed on that node
  (`node.id==`), and the agent checks it still has the image before the update.
- **With it** the image is pushed there (`image.registry_user` and its password
  when the registry wants them) and the service runs it by digest, on any node:
  each node pulls it. The credentials (`image.registry_user` and its password;
  without them, the agent host's Docker config) go with the service
  create/update as Docker's `--with-registry-auth` sends them, so nodes need no
  `docker login` of their own. A node that still
  can't get it rejects its task: Swarm rolls the update back and the agent
  names the node (rasa_fleet.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from agent.image.push import Credentials, PushError, push_image, registry_of, split_ref
from agent.secrets import Redactor
from agent.targets.base import DeployError, LogSink
from agent.targets.docker.rasa_images import explain


@dataclass(frozen=True)
class PlacedImage:
    run: str  # what the service's tasks run: the local tag, or repository@digest
    built: str  # the tag built on the engine (rasa-gitops-rasa:...), pruned later
    node: str  # the node the replicas must run on; "" for any node

    @property
    def spans_nodes(self) -> bool:
        return not self.node


def place_image(client: Any, built: str, *, release_id: str, repository: str, node: str,
                credentials: Credentials | None, push_attempts: int, log: LogSink
                ) -> PlacedImage:
    """Push `built` to `repository` when there is one, else pin the engine's node."""
    import docker.errors

    if not repository:
        try:
            client.images.get(built)
        except docker.errors.ImageNotFound:
            raise DeployError(no_image_message(node, built, release_id, "")) from None
        return PlacedImage(built, built, node)
    target = f"{repository}:{split_ref(built)[1]}"
    scrub = Redactor([credentials.password] if credentials else [])
    pushed = None
    try:
        client.images.get(built).tag(*split_ref(target))
        pushed = push_image(client, target, log, credentials=credentials,
                            attempts=push_attempts)
        if credentials is not None:
            # Kept in this docker-py client (reauth: not a stale entry of the
            # host's ~/.docker/config.json), which sends it with the service
            # create/update: Docker's --with-registry-auth.
            client.login(username=credentials.username, password=credentials.password,
                         registry=registry_of(repository), reauth=True)
    except PushError as exc:
        raise DeployError(f"cannot push the release's Rasa image (model.rasa_repository): "
                          f"{exc}") from None
    except docker.errors.DockerException as exc:
        raise DeployError(f"cannot push {target} (model.rasa_repository): "
                          f"{scrub(explain(exc))}") from None
    finally:
        # Only the built tag names the image here, so pruning it frees it (this
        # node pulls the digest back, as any node does: only the manifest).
        for name in (target, pushed.by_digest if pushed else ""):
            with contextlib.suppress(docker.errors.DockerException):
                if name:
                    client.images.remove(name)
    return PlacedImage(pushed.by_digest, built, "")


def no_image_message(node: str, image: str, release_id: str, detail: str) -> str:
    where = f"Swarm node {node}" if node else "a Swarm node"
    what = f" {image}" if image else ""
    because = f" ({detail})" if detail else ""
    return (f"{where} has no image{what} for release {release_id}{because}; without "
            "model.rasa_repository the release's Rasa image is built on the engine the agent "
            "reaches and the replicas are placed on that node (was the image removed "
            "meanwhile? docker image prune); with it, every node pulls the image from there: "
            "check that the node reaches the registry and that the image is still in it")
