"""model.target: model_server in the agent's config: the keys, their checks and
what the factory builds from them. Fast: no server starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.doctor import run_doctor
from agent.prune import trim_server_logs
from agent.targets.factory import build_targets
from agent.targets.model_server import ModelServerTarget, Puller
from tests.support.agent_config import agent_config
from tests.support.services import free_port

PULLERS = [{"name": "rasa-eu-1", "url": "http://10.0.0.5:5005"}]


def model_target(path: Path, environment: str | None = None) -> ModelServerTarget:
    config = load_config(path)
    if environment is not None:
        config = config.for_environment(environment)
    target = build_targets(config).model
    assert isinstance(target, ModelServerTarget)
    return target


def test_builds_one_shared_server_with_a_tag_per_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULL_TOKEN", "pull-token-from-env")
    path = agent_config(tmp_path, repo=str(tmp_path / "repo"), work_dir=str(tmp_path / "w"),
                        model={"target": "model_server", "server_port": 5099,
                               "server_token_env": "PULL_TOKEN", "pullers": PULLERS,
                               "wait_time_between_pulls": 3},
                        environments={"staging": {"promote": "auto", "model": {
                            "pullers": [{"name": "rasa-staging", "url": "http://s:5005"}]},
                            "action_server": {"port": 5155}},
                            "production": {"promote": "manual", "after": "staging"}})
    staging, production = model_target(path, "staging"), model_target(path, "production")
    assert staging.server_dir == production.server_dir == tmp_path / "w" / "model-server"
    assert staging.tag_file.name == "staging.json"
    assert production.tag_file.name == "production.json"
    assert production.model_url == "http://127.0.0.1:5099/models/production"
    assert staging.pullers == [Puller("rasa-staging", "http://s:5005")]
    assert production.pullers == [Puller("rasa-eu-1", "http://10.0.0.5:5005")]
    assert production.wait_time == 3 and production.secrets() == ["pull-token-from-env"]
    # Without a configured token the agent makes one, kept 0600 for the pullers' owner.
    made = model_target(agent_config(tmp_path / "made.yml", repo=str(tmp_path / "repo"),
                                     work_dir=str(tmp_path / "w2"),
                                     model={"target": "model_server"}))
    token_file = tmp_path / "w2" / "model-server" / "auth-token"
    assert made.secrets() == [token_file.read_text().strip()]
    assert token_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("model", "environments", "problem"), [
    ({"pullers": [{"name": "a"}]}, None, "item 1 must be"),
    ({"pullers": [{"name": "a", "url": "ftp://x"}]}, None, "item 1 must be"),
    ({"pullers": PULLERS * 2}, None, "names a puller twice"),
    ({"serving": "blue_green"}, None, "remove model.serving"),
    ({}, {"staging": {"model": {"server_port": 6000}, "action_server": {"port": 5155}},
          "production": {"after": "staging"}}, "one model server serves every environment"),
])
def test_refuses_what_model_server_mode_cannot_do(
        tmp_path: Path, model: dict[str, object], environments: object, problem: str) -> None:
    extra = {"environments": environments} if environments else {}
    path = agent_config(tmp_path, repo=str(tmp_path / "repo"), work_dir=str(tmp_path / "w"),
                        model={"target": "model_server", **model}, **extra)
    with pytest.raises(ConfigError, match=problem):
        config = load_config(path)
        for env in config.environments:
            build_targets(config.for_environment(env.name))


def test_doctor_checks_the_model_server_and_skips_haproxy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_config(tmp_path, repo=str(tmp_path / "repo"), work_dir=str(tmp_path / "w"),
                        model={"target": "model_server", "server_port": free_port()})
    run_doctor(path)
    lines = capsys.readouterr().out.splitlines()
    haproxy = [line for line in lines if line.split()[1:2] == ["haproxy"]]
    assert haproxy and haproxy[0].startswith("SKIP") and "model_server" in haproxy[0]
    server = [line for line in lines if "rasa server" in line]
    assert server and server[0].startswith("OK"), lines
    assert "the model server (port" in server[0] and "the agent starts it" in server[0]


def test_the_model_server_log_is_cut_like_every_server_log(tmp_path: Path) -> None:
    log = tmp_path / "model-server" / "model-server.log"
    log.parent.mkdir()
    log.write_text("x.x.x.x GET /models/production 304\n" * 400)  # ~14 KB
    assert trim_server_logs(tmp_path, max_bytes=4000) == [log]
    assert log.stat().st_size < 4000
