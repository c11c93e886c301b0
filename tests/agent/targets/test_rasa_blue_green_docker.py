"""Blue/green Rasa servers as containers of each release (model.runtime: docker).

A real dockerd, real HAProxy on this host, and real Rasa 3.6.21 in containers
of an image made offline in place of rasa/rasa (tests/support/rasa_image.py),
serving the two light models of the example bot that greet differently
(tests/support/light_models.py). Each container start loads Rasa (15-25 s),
so one test walks the whole life of the target in sequence, ending with the
agent SIGKILLed inside a switch (at `rasa.started`: the new container loading;
at `rasa.switched`: HAProxy already on it, the old one still running) and
started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tarfile
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from agent.targets.base import DeployError
from agent.targets.docker.rasa_images import IMAGE_REPOSITORY, LABEL_ROLE, ROLE
from agent.targets.docker.rasa_slots import TRACKER_VOLUME
from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from tests.support.ci import need
from tests.support.container_target import ContainerTarget
from tests.support.light_models import GREETINGS, light_coffeebots
from tests.support.procs import processes_showing
from tests.support.services import DockerEngine
from tests.support.serving import switch_while_chatting

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1200)]


def rasa_containers(client: Any) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_ROLE}={ROLE}"}))


def remove_tracker_volume(client: Any) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.volumes.get(TRACKER_VOLUME).remove(force=True)


def user_texts(target: BlueGreenRasaTarget, sender: str) -> list[str]:
    """What `sender` said, as the tracker behind the stable port holds it."""
    answer = requests.get(f"{target.url}/conversations/{sender}/tracker",
                          params={"token": target.secrets()[0]}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [event.get("text", "") for event in answer.json()["events"]
            if event.get("event") == "user"]


def model_without_components(dest: Path) -> Path:
    """A model file Rasa can't load: its metadata.json and nothing else."""
    (dest / "metadata.json").write_text(json.dumps({"model_id": "corrupt-model"}),
                                        encoding="utf-8")
    path = dest / "corrupt.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(dest / "metadata.json", arcname="metadata.json")
    return path


def test_releases_switch_between_containers_keeping_conversations(
        tmp_path: Path, rasa_bin: Path, docker_engine: DockerEngine, rasa_image: str) -> None:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    client = docker_engine.client()
    remove_tracker_volume(client)  # an earlier run's conversations
    state = tmp_path / "bg"
    built = ContainerTarget(docker_engine.base_url, rasa_image, (free_port(), free_port()),
                            f"http://127.0.0.1:{free_port()}", str(state))
    target = built.build()
    models = light_coffeebots(str(rasa_bin))
    (bot1, model1), (bot2, model2) = models["one"], models["two"]
    started = time.monotonic()

    def log(line: str) -> None:  # timed: what each step costs shows in the output
        print(f"{time.monotonic() - started:6.1f} s  {line}")

    try:
        first = target.upload("1", model1, log, bot1)
        target.activate(first, log)
        assert target.talk("kept", "hello") == [GREETINGS["one"]]
        first_container = json.loads((state / "live.json").read_text())["handle"]["container"]
        assert [c.id for c in rasa_containers(client)] == [first_container]

        chatter, second = switch_while_chatting(target, "2", model2, bot2, log)
        assert chatter.failures == []
        assert chatter.replies[0] == GREETINGS["one"]
        assert chatter.replies[-1] == GREETINGS["two"]
        assert target.live_model_id() == second.model_id
        # The old container is gone; the new one serves at the default CPU weight.
        (live,) = rasa_containers(client)
        assert live.id != first_container and live.status == "running"
        assert live.attrs["HostConfig"]["CpuShares"] == 1024
        assert live.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        # The token is on no command line on the host (`ps` shows a container's
        # processes) and nowhere `docker inspect` shows.
        token = target.secrets()[0]
        assert processes_showing(token) == []
        assert token not in json.dumps(live.attrs)
        # Of the agent's environment it got nothing the bot's files don't name.
        assert os.environ.get("PYENV_VERSION")
        assert not [v for v in live.attrs["Config"]["Env"] if v.startswith("PYENV_VERSION=")]
        # The conversation started on release 1 kept its tracker (the default
        # SQLite store on the volume both containers mount) and goes on there.
        assert user_texts(target, "kept") == ["hello"]
        target.talk("kept", "hello again")
        assert user_texts(target, "kept") == ["hello", "hello again"]
        client.volumes.get(TRACKER_VOLUME)

        broken = target.upload("3", model_without_components(tmp_path), log, bot2)
        with pytest.raises(DeployError, match=r"could not load the model of release 3|"
                                              r"exited while loading the model of release 3"
                           ) as refused:
            target.activate(broken, log)
        log(f"release 3 refused: {refused.value}")
        assert target.live_model_id() == second.model_id
        assert target.talk("someone", "hello") == [GREETINGS["two"]]
        assert [c.id for c in rasa_containers(client)] == [live.id]
        # The live release's image and the one before it stay (rollback); none other.
        tags = {tag for image in client.images.list(name=IMAGE_REPOSITORY)
                for tag in image.tags}
        assert f"{IMAGE_REPOSITORY}:2" in tags and f"{IMAGE_REPOSITORY}:1" in tags
        assert tags <= {f"{IMAGE_REPOSITORY}:{n}" for n in ("1", "2", "3")}

        # The agent SIGKILLed inside a switch, then started again: its new
        # container outlives it; the restart leaves exactly one container, the
        # one the live record names, serving on the stable port.
        for point, release, serving in (("rasa.started", "4", second.model_id),
                                        ("rasa.switched", "5", first.model_id)):
            died = built.activate_killed_at(point, release, model1, bot1)
            assert died.returncode == -signal.SIGKILL, died.stdout[-2000:] + died.stderr[-2000:]
            assert len(rasa_containers(client)) == 2
            log(f"killed at {point}")
            restarted = built.build()
            restarted.ensure_server(log)
            (alone,) = rasa_containers(client)
            assert alone.status == "running"
            assert restarted.live_model_id() == serving
            assert restarted.talk(f"after-{point}", "hello") == [
                GREETINGS["two" if serving == second.model_id else "one"]]
    finally:
        target.stop_all(log)
    assert rasa_containers(client) == []
    assert not target.proxy.running()
    remove_tracker_volume(client)
    client.close()
