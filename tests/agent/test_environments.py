"""Environments as places, at start-up (agent/environments.py through load_config):
each names its own servers, two never share a port or containers of one host,
the promotion order has no cycle; each refusal names the file, the key and the
line. No servers run here: what a place serves is the end-to-end tests' job.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.config_schema import ACTION_SERVER_TARGET_NAMES
from agent.deploy_lock import deploy_lock, lock_name, try_deploy_lock
from agent.environments import Verify
from agent.pipeline import gates
from agent.runtime import Agent
from agent.steps.build import uses_images
from agent.targets.factory import ACTION_SERVER_TARGETS
from hooks.core.errors import FatalError

BASE = "repo: bot.git\nwork_dir: work\n"
TWO = """environments:
  staging:
    action_server: {port: 5155}
    model: {url: "http://127.0.0.1:5105"}
    verify: {soak_seconds: 30}
  production:
    promote: manual
    verify: {smoke: false}
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yml"
    path.write_text(BASE + text, encoding="utf-8")
    return path


def test_each_environment_sees_its_own_servers_over_the_shared_defaults(tmp_path: Path) -> None:
    smoke = "smoke:\n  conversations:\n    - - say: hello\n"
    config = load_config(_config(tmp_path, "action_server:\n  port: 5055\n" + smoke + TWO))
    assert config.for_environment("staging")["smoke.conversations"] == [[{"say": "hello"}]]
    staging, production = config.environments
    assert (staging.name, staging.after, staging.promote) == ("staging", None, "auto")
    assert (production.name, production.after, production.promote) == (
        "production", "staging", "manual")
    assert staging.verify == Verify(smoke=True, soak_seconds=30.0)
    assert production.verify == Verify(smoke=False)
    seen = config.for_environment("staging")
    assert seen["action_server.port"] == 5155 and seen["model.url"] == "http://127.0.0.1:5105"
    assert seen.state_dir == config.work_dir / "environments" / "staging"  # by name
    prod = config.for_environment("production")
    assert prod["action_server.port"] == 5055 and prod["model.url"] == "http://127.0.0.1:5005"
    assert prod.state_dir == config.work_dir / "environments" / "production"
    assert prod.work_dir == config.work_dir  # one journal, one mirror
    assert prod["smoke.conversations"] is None  # verify: {smoke: false}
    assert config["action_server.port"] == 5055  # the top level is untouched


def test_no_environments_key_is_one_production_environment(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, ""))
    assert [(e.name, e.after) for e in config.environments] == [("production", None)]
    assert config.for_environment("production").values == config.values


@pytest.mark.parametrize(("text", "key", "problem"), [
    # Two environments on one port: the second's key is named, and the first's.
    ("environments:\n  staging: {}\n  production: {}\n", "environments.production.action_server"
     ".port", "port 5055 on this host is also environments.staging.action_server.port's"),
    ("environments:\n  staging:\n    action_server: {port: 5155}\n"
     "  production:\n    model: {url: 'http://127.0.0.1:5156'}\n",
     "environments.production.model.url", "port 5156 on this host is also environments."
     "staging.action_server.backend_ports's"),
    # Docker containers of one name on one engine.
    ("action_server: {target: docker}\nimage: {repository: r.example.com/bot}\n"
     "environments:\n  staging:\n    action_server: {port: 5155}\n"
     "    model: {url: 'http://127.0.0.1:5105'}\n  production: {}\n",
     "environments.production.action_server.instance",
     "containers rasa-actions-bot on this host is also environments.staging"),
    ("environments:\n  staging:\n    action_server: {target: kubernetes}\n",
     "environments.staging.action_server.target", "'kubernetes' is not one of"),
    ("environments:\n  staging:\n    after: production\n    action_server: {port: 5155}\n"
     "    model: {url: 'http://127.0.0.1:5105'}\n  production:\n    after: staging\n",
     "environments.staging.after", "the promotion order has a cycle: staging -> production "
     "-> staging"),
    ("environments:\n  production:\n    after: qa\n", "environments.production.after",
     "no environment 'qa' (known: production)"),
    ("environments:\n  production:\n    model: {auth_token_env: T}\n",
     "environments.production.model.auth_token_env", "secrets are set once, at the top level"),
    ("environments:\n  production:\n    model: {colour: blue}\n",
     "environments.production.model.colour", "unknown key"),
    ("environments:\n  production:\n    verify: {soak_seconds: -1}\n",
     "environments.production.verify.soak_seconds", "must be 0 or more"),
    ("environments:\n  production:\n    verify: {smoke: 'yes please'}\n",
     "environments.production.verify.smoke", "must be true or false"),
    ("environments:\n  production:\n    verify: {nlu_gate: true}\n",
     "environments.production.verify.nlu_gate", "use `nlu_gate: {enabled: true}` there"),
    ("environments:\n  eu.prod: {}\n", "environments.eu.prod", "an environment's name is "
     "lower-case letters"),
    ("environments:\n  ../x: {}\n", "environments.../x", "an environment's name is"),
    ("environments:\n  production:\n    region: eu\n", "environments.production.region",
     "unknown key; known: promote, after, verify, action_server, model"),
])
def test_a_bad_environment_is_refused_naming_file_key_and_line(
        tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message, message
    assert "(line " in message, message


def test_the_schema_knows_exactly_the_registered_action_server_targets() -> None:
    assert set(ACTION_SERVER_TARGET_NAMES) == set(ACTION_SERVER_TARGETS)


def test_the_agent_builds_each_environments_own_servers(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, TWO))
    agent = Agent.open(config)
    try:
        staging, production = agent.place("staging"), agent.place("production")
        assert agent.targets is staging  # releases flow into the first environment
        assert staging.action_server.url != production.action_server.url
        assert ":5155" in staging.action_server.url and ":5055" in production.action_server.url
        with pytest.raises(FatalError, match="no environment 'qa' "
                                             r"\(known: staging, production\)"):
            agent.place("qa")
    finally:
        agent.close()


def test_each_environment_has_its_own_deploy_lock(tmp_path: Path) -> None:
    """A switch in production (another process) never makes staging wait."""
    config = load_config(_config(tmp_path, TWO))
    assert [lock_name(config, e.name) for e in config.environments] == [
        "deploy:staging", "deploy:production"]
    agent = Agent.open(config)
    hold = ("import sys, time; from pathlib import Path; from agent.journal import Journal; "
            "Journal(Path(sys.argv[1])).acquire_lock('deploy:production', 'a promote'); "
            "print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", hold, str(agent.journal.path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        started = time.monotonic()
        with deploy_lock(agent, "a switch in staging", environment="staging"):
            holder = agent.journal.lock_holder("deploy:staging")
            assert holder is not None and holder["purpose"] == "a switch in staging"
        assert time.monotonic() - started < 1
        assert not try_deploy_lock(agent, "supervisor", "production")
    finally:
        other.kill()
        other.wait()
        agent.close()


def test_adding_staging_before_production_leaves_production_its_live_servers(
        tmp_path: Path) -> None:
    """The single-environment layout (servers' state in work_dir itself) belongs
    to the environment the journal has live, not to whichever is listed first."""
    single = load_config(_config(tmp_path, ""))
    agent = Agent.open(single)
    (single.work_dir / "action-server").mkdir()  # what a running agent leaves
    agent.journal.set_production("production", agent.journal.new_release(
        environment="production", commit="a" * 40, branch="main", author="t",
        message="live").id, kind="production.promoted", actor="t", reason="")
    agent.close()
    assert single.for_environment("production").state_dir == single.work_dir
    both = load_config(_config(tmp_path, TWO))  # staging added FIRST
    agent = Agent.open(both)
    agent.close()
    assert both.for_environment("production").state_dir == both.work_dir  # still its own
    assert both.for_environment("staging").state_dir == (
        both.work_dir / "environments" / "staging")
    assert (both.work_dir / "legacy-environment").read_text().strip() == "production"


def test_an_image_is_built_when_any_environment_runs_containers(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "image: {repository: r.example.com/bot}\n" + TWO.replace(
        "  production:\n", "  production:\n    action_server: {target: docker}\n")))
    assert config.for_environment("staging")["action_server.target"] == "local"
    assert uses_images(config)
    assert [step.NAME for step in gates(config)][-2:] == ["build", "push"]
    assert not uses_images(load_config(_config(tmp_path, TWO)))
