"""The Rasa X / Rasa Enterprise model target, against a fake Rasa X.

There is no installable Rasa X, so these tests run the target against
`tests/support/fake_rasa_x.py`, a small HTTP fake that follows only Rasa X's
documented model API (upload, tag, read the tagged model, both auth modes) and
answers exactly its documented codes. They show what the target does with each
code, not that a real Rasa X behaves as documented. Fast: no Rasa, no process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.doctor import _haproxy, _rasa_server
from agent.journal import PROMOTED
from agent.promote import promote
from agent.runtime import Agent
from agent.secrets import Secret
from agent.targets.base import DeployError, ModelRef
from agent.targets.factory import Targets, build_targets
from agent.targets.rasa_x import RasaXModelTarget, rasa_x_name
from hooks.core.errors import FatalError
from tests.support.fake_rasa_server import fake_model
from tests.support.fake_rasa_x import MODELS, RasaXState, fake_rasa_x
from tests.support.memory_targets import memory_world

TOKEN = "rx-api-token-5c1f9e2a"
PASSWORD = "rx-pass-word-81d3b7"
MODEL_ID = "a" * 32


@contextmanager
def rasa_x(mode: str = "token", **state: object) -> Iterator[tuple[RasaXState, RasaXModelTarget]]:
    """A fake Rasa X and a target that logs in with `mode` ("token" or "password")."""
    fake = RasaXState(api_token=TOKEN, users={"alice": PASSWORD})
    for name, value in state.items():
        setattr(fake, name, value)
    with fake_rasa_x(fake) as url:
        if mode == "token":
            yield fake, RasaXModelTarget(url=url, api_token=Secret(TOKEN, "$RX_TOKEN"))
        else:
            yield fake, RasaXModelTarget(url=url, username="alice",
                                         password=Secret(PASSWORD, "$RX_PASSWORD"))


def codes(fake: RasaXState, method: str, path: str) -> list[int]:
    return [code for m, p, code in fake.requests if (m, p) == (method, path)]


def model(tmp_path: Path, model_id: str = MODEL_ID) -> Path:
    """One archive per model_id, made once: gzip stamps the time, so a remade
    archive is other bytes (another name)."""
    path = tmp_path / f"{model_id}.tar.gz"
    return path if path.exists() else fake_model(path, model_id)


def test_upload_201_then_the_same_model_again_is_a_409_read_as_uploaded(tmp_path: Path) -> None:
    lines: list[str] = []
    with rasa_x() as (fake, target):
        ref = target.upload("7", model(tmp_path), lines.append)
        again = target.upload("8", model(tmp_path), lines.append)
    name = rasa_x_name(model(tmp_path))
    assert name.startswith(f"{MODEL_ID}-") and set(fake.models) == {name}
    assert ref.model_id == MODEL_ID and ref.location.endswith(f"{MODELS}/{name}")
    assert again.model_id == MODEL_ID
    assert codes(fake, "POST", MODELS) == [201, 409]
    assert any("already has model" in line for line in lines)


def test_a_model_rasa_cannot_load_is_a_400_model_version_error(tmp_path: Path) -> None:
    with rasa_x(refuse_models=True) as (fake, target), pytest.raises(
            DeployError, match="ModelVersionError") as refused:
        target.upload("7", model(tmp_path), print)
    assert "can't load this model" in str(refused.value)
    assert codes(fake, "POST", MODELS) == [400] and fake.models == {}


def test_activate_tags_with_204_and_the_tag_reads_back_with_etag(tmp_path: Path) -> None:
    with rasa_x() as (fake, target):
        assert target.live_model_id() is None  # 404: nothing tagged yet
        ref = target.upload("7", model(tmp_path), print)
        target.activate(ref, print)
        name = rasa_x_name(model(tmp_path))
        assert fake.tags == {"production": name}
        assert codes(fake, "PUT", f"{MODELS}/{name}/tags/production") == [204]
        assert target.serves(ref) and target.live_model_id() == MODEL_ID
        tag_reads = codes(fake, "GET", f"{MODELS}/tags/production")
        # 404 untagged (twice: activate looks first), 200 with the ETag after
        # tagging, then 204s: If-None-Match matched.
        assert tag_reads[:3] == [404, 404, 200] and set(tag_reads[3:]) == {204}
        other = target.upload("8", model(tmp_path, "b" * 32), print)
        target.activate(other, print)  # the tag moves: the old ETag no longer matches
        assert target.live_model_id() == "b" * 32 and not target.serves(ref)
        assert 200 in codes(fake, "GET", f"{MODELS}/tags/production")[len(tag_reads):]


def test_tagging_an_unknown_model_is_a_404_that_says_so(tmp_path: Path) -> None:
    with rasa_x() as (fake, target):
        gone = ModelRef("7", MODEL_ID, f"{target.url}{MODELS}/{MODEL_ID}-000000000000")
        with pytest.raises(DeployError, match=r"no model of that name \(404\)"):
            target.activate(gone, print)
    assert fake.tags == {}


def test_password_login_gets_a_bearer_token_and_logs_in_again_once_on_401(
        tmp_path: Path) -> None:
    with rasa_x("password") as (fake, target):
        ref = target.upload("7", model(tmp_path), print)
        fake.expire_tokens()
        target.activate(ref, print)
        fake.expire_tokens()  # an upload sent again after a new login sends the whole file
        target.upload("8", model(tmp_path, "b" * 32), print)
    assert codes(fake, "POST", "/api/auth") == [200, 200, 200]
    assert codes(fake, "POST", MODELS) == [201, 401, 201]
    assert fake.tags == {"production": rasa_x_name(model(tmp_path))}
    again = model(tmp_path, "b" * 32)
    assert fake.models[rasa_x_name(again)] == again.read_bytes()


def everything_said(act: Callable[[list[str]], object]) -> str:
    """The log lines and the error text of one action."""
    lines: list[str] = []
    try:
        act(lines)
    except DeployError as exc:
        lines.append(str(exc))
        lines.append(repr(exc))
    return "\n".join(lines)


def test_a_wrong_token_or_password_is_a_clear_refusal_without_the_secret(
        tmp_path: Path) -> None:
    with rasa_x(api_token="another-token") as (_, target):
        said = everything_said(lambda log: target.upload("7", model(tmp_path), log.append))
    assert "refused the api token (HTTP 401)" in said and "model.rasa_x_api_token_env" in said
    with rasa_x("password", users={"alice": "not-that-one"}) as (_, target):
        said += everything_said(lambda log: target.upload("7", model(tmp_path), log.append))
    assert "refused the login of user 'alice'" in said and "model.rasa_x_password_env" in said
    assert TOKEN not in said and PASSWORD not in said


def said_in_mode(mode: str, tmp_path: Path) -> tuple[str, list[str]]:
    """Everything one login mode logs and raises over a run with each refusal,
    then with Rasa X gone; and the secrets its target held."""
    with rasa_x(mode) as (fake, target):
        said = everything_said(lambda log: target.activate(
            target.upload("7", model(tmp_path), log.append), log.append))
        fake.refuse_models = True
        said += everything_said(lambda log: target.upload(
            "8", model(tmp_path, "c" * 32), log.append))
        said += everything_said(lambda log: target.activate(
            ModelRef("9", "x", f"{target.url}{MODELS}/nope"), log.append))
        held = target.secrets()
    # Rasa X gone: requests' own error would carry the URL with ?api_token=.
    said += everything_said(lambda log: target.live_model_id())
    assert not target.server_answers()
    return said, held


def test_no_secret_reaches_a_log_line_or_an_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.targets.rasa_api.CONNECT_BACKOFF", 0.0)
    said, token_held = said_in_mode("token", tmp_path)
    more, password_held = said_in_mode("password", tmp_path)
    said += more
    # Each error is there twice (its str and its repr), once per login mode.
    assert said.count("does not answer") == 4 and said.count("ModelVersionError") >= 4
    assert token_held == [TOKEN] and len(password_held) == 2  # the password, its access token
    for secret in (TOKEN, PASSWORD, *password_held):
        assert secret not in said


def agent_yml(tmp_path: Path, auth: str) -> Path:
    path = tmp_path / "agent.yml"
    path.write_text(f"repo: {tmp_path / 'bot.git'}\nwork_dir: {tmp_path / 'work'}\n"
                    "model:\n  target: rasa_x\n  rasa_x_url: http://rasa-x.example:8080\n"
                    + auth, encoding="utf-8")
    return path


def test_the_config_builds_the_target_and_refuses_a_half_login(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RX_PASSWORD", PASSWORD)
    both = "  rasa_x_username: alice\n  rasa_x_password_env: RX_PASSWORD\n"
    model_target = build_targets(load_config(agent_yml(tmp_path, both))).model
    assert isinstance(model_target, RasaXModelTarget) and model_target.tag == "production"
    assert model_target.rest_url == "http://rasa-x.example:8080/core/webhooks/rest/webhook"
    (tmp_path / "rx-token").write_text(f"{TOKEN}\n", encoding="utf-8")
    from_file = build_targets(load_config(agent_yml(
        tmp_path, "  rasa_x_api_token_file: rx-token\n  rasa_x_tag: staging\n"))).model
    assert isinstance(from_file, RasaXModelTarget) and from_file.tag == "staging"
    assert from_file.secrets() == [TOKEN]
    half = "  rasa_x_password_env: RX_PASSWORD\n"
    with pytest.raises(ConfigError, match="one way to log in"):
        build_targets(load_config(agent_yml(tmp_path, half)))


def test_a_promotion_through_the_switch_moves_rasa_x_s_tag(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    old = world.release(model_id="1" * 32, calls=set(), code="code-1", status=PROMOTED,
                        live=True)
    new = world.release(model_id="2" * 32, calls=set(), code="code-2")
    for release_id in (old, new):  # the memory world's models are not archives
        found = world.journal.release(release_id)
        fake_model(Path(str(found.model_path)), str(found.model_id))
    with rasa_x() as (fake, target):
        target.activate(target.upload(str(old), Path(str(
            world.journal.release(old).model_path)), print), print)
        agent = world.agent
        switched = Agent(agent.config, agent.journal, agent.mirror,
                         Targets(world.actions, target), agent.progress)
        promote(switched, new, "production")
        assert target.live_model_id() == "2" * 32
    assert fake.tags["production"].startswith("2" * 32)
    assert world.journal.production_release("production").id == new  # type: ignore[union-attr]


def test_doctor_reads_the_tag_and_names_a_wrong_token_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RX_TOKEN", TOKEN)
    with rasa_x() as (fake, target):
        yml = agent_yml(tmp_path, "  rasa_x_api_token_env: RX_TOKEN\n").read_text()
        path = tmp_path / "agent.yml"
        path.write_text(yml.replace("http://rasa-x.example:8080", target.url), encoding="utf-8")
        config = load_config(path)
        target.activate(target.upload("7", model(tmp_path), print), print)
        assert _rasa_server(config) == (
            "OK", f"Rasa X at {target.url} answers; live model {MODEL_ID}")
        assert _haproxy(config)[0] == "SKIP"
        fake.api_token = "rotated"
        verdict, said = _rasa_server(config)
    assert verdict == "FAIL" and "refused the api token" in said and TOKEN not in said


def test_a_failed_switch_is_undone_by_moving_rasa_x_s_tag_back(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    # The new release drops action_a: the plan switches the model first, then the
    # action server, whose deploy fails; the undo must tag the old model again.
    old = world.release(model_id="1" * 32, calls={"action_a", "action_b"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="2" * 32, calls={"action_b"}, code="code-2")
    for release_id in (old, new):
        found = world.journal.release(release_id)
        fake_model(Path(str(found.model_path)), str(found.model_id))
    world.actions.failures.fail_at["deploy"] = {1}
    with rasa_x() as (fake, target):
        target.activate(target.upload(str(old), Path(str(
            world.journal.release(old).model_path)), print), print)
        agent = world.agent
        switched = Agent(agent.config, agent.journal, agent.mirror,
                         Targets(world.actions, target), agent.progress)
        with pytest.raises(FatalError, match="production is unchanged"):
            promote(switched, new, "production")
        assert target.live_model_id() == "1" * 32
    tagged = [path for method, path, code in fake.requests if method == "PUT" and code == 204]
    assert [path.split("/")[-3][:1] for path in tagged] == ["1", "2", "1"]
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]
