"""Every key the agent's YAML file knows: its type, default, check and help.

The table is data, so adding a setting is one line here: the loader in
`config.py` type-checks it, runs its check, fills its default and names it in
`file: key: problem` errors without new code. `REQUIRED` marks a key without a
default; its `help` then says what to put there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.notify_config import check_notify

Check = Callable[[Any], "str | None"]
REQUIRED = object()

PROMOTION_POLICIES = ("auto", "auto_unless_action_code", "manual")
# The keys of agent/targets/factory.py's ACTION_SERVER_TARGETS (a test keeps them equal).
ACTION_SERVER_TARGET_NAMES = ("local", "docker", "docker_ssh", "swarm")
BRANCH_NAME = re.compile(r"^(?!/|.*//|.*\.\.|.*@\{|.*\.lock$|.*/$)[A-Za-z0-9._/-]+$")


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _port(value: Any) -> str | None:
    return None if 0 < value < 65536 else "must be a TCP port (1-65535)"


def _branch(value: Any) -> str | None:
    return None if BRANCH_NAME.match(value) else f"{value!r} is not a valid git branch name"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"{value!r} is not one of: {', '.join(choices)}"

    return check


def _conversations(value: Any) -> str | None:
    for i, conversation in enumerate(value):
        if not isinstance(conversation, list) or not conversation:
            return f"item {i + 1} must be a list of {{say: ..., expect: ...}} turns"
        for turn in conversation:
            if not isinstance(turn, dict) or not isinstance(turn.get("say"), str) or set(
                turn) - {"say", "expect"}:
                return f"item {i + 1}: each turn is {{say: TEXT, expect: TEXT}} (expect optional)"
    return None


def _strings(value: Any) -> str | None:
    if all(isinstance(item, str) and item.strip() for item in value):
        return None
    return "must be a list of non-empty messages"


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_names(value: Any) -> str | None:
    for item in value:
        if not isinstance(item, str) or not ENV_NAME.match(item):
            return (f"{item!r} is not an environment variable name; list names only, "
                    "e.g. [BOT_API_URL, HTTPS_PROXY]: the values come from the agent's "
                    "environment")
    if len(set(value)) != len(value):
        return "names a variable twice"
    return None


def _url(value: Any) -> str | None:
    return None if re.match(r"^https?://[^/\s]+", value) else f"{value!r} is not an http(s) URL"


def _pullers(value: Any) -> str | None:
    names = []
    for i, item in enumerate(value):
        if not (isinstance(item, dict) and set(item) == {"name", "url"}
                and isinstance(item["name"], str) and item["name"].strip()
                and isinstance(item["url"], str) and _url(item["url"]) is None):
            return f"item {i + 1} must be {{name: NAME, url: http://HOST:PORT}}"
        names.append(item["name"])
    return None if len(set(names)) == len(names) else "names a puller twice"


@dataclass(frozen=True)
class Key:
    types: tuple[type, ...]
    default: Any
    check: Check | None = None
    help: str = ""
    nullable: bool = False


def _key(types: type | tuple[type, ...], default: Any, check: Check | None = None,
         help: str = "", nullable: bool = False) -> Key:
    return Key(types if isinstance(types, tuple) else (types,), default, check, help, nullable)


NUMBER = (int, float)

SCHEMA: dict[str, Key] = {
    "repo": _key(str, REQUIRED, help="a local bare repository path, or a remote git URL"),
    "branch": _key(str, "main", _branch, "the branch whose commits become releases"),
    "work_dir": _key(str, REQUIRED, help="where the journal, worktrees and models live"),
    "rasa_command": _key(str, None, nullable=True,
                         help="the command that runs Rasa, e.g. `rasa`; default: found as the "
                         "hooks find it ($RASA_GITOPS_RASA, else the rasa beside the agent's "
                         "Python, else rasa on PATH)"),
    "poll_interval": _key(NUMBER, 60, _positive, "seconds between `git fetch` for remotes"),
    "keep_releases": _key(int, 5, _positive, "worktrees and models kept for rollback"),
    # Bounds on what grows for ever (agent/prune.py).
    "keep_logs": _key(int, 20, _positive, "releases whose step logs and action-server logs "
                      "are kept (production's and in-flight ones always are)"),
    "log_max_mb": _key(NUMBER, 20, _positive, "a server's own log (HAProxy, forwarder, Rasa) "
                       "is cut to its newest half past this size"),
    "journal.keep_events": _key(int, 10000, _positive, "journal events kept (newest first)"),
    # The daemon's watch over the servers it runs (agent/supervise.py).
    "supervise.enabled": _key(bool, True, help="`agent run` restarts a crashed Rasa server, "
                              "action server, forwarder or HAProxy"),
    "supervise.interval": _key(NUMBER, 1, _positive, "seconds between two looks at the servers"),
    "supervise.max_backoff": _key(NUMBER, 60, _positive, "longest wait (s) before restarting "
                                  "a server that keeps crashing (1, 2, 4, ... s)"),
    "pipeline.max_history": _key(int, None, _positive, nullable=True,
                                 help="passed to validation; default: from config.yml"),
    "pipeline.fail_on_warnings": _key(bool, True),
    "pipeline.test_stories": _key(str, "tests/test_*.yml", help="glob in the bot repo"),
    "pipeline.action_tests": _key(str, None, nullable=True,
                                  help="command run in the release worktree, e.g. `pytest -q`"),
    "pipeline.step_timeout": _key(NUMBER, 3600, _positive, "seconds before a step fails"),
    "pipeline.env": _key(list, None, _env_names, nullable=True,
                         help="names of variables of the agent's environment that the commit's "
                         "code needs: train, test and action-test steps and the Rasa servers "
                         "get them; nothing else of the agent's environment reaches them "
                         "but PATH, HOME, LANG, TMPDIR and the like"),
    "pipeline.priority": _key(str, "background", one_of("background", "normal"),
                              "background: training, tests and image builds run at nice 19 "
                              "and idle IO, so the live bot on this host keeps answering"),
    "action_server.target": _key(str, "local", one_of(*ACTION_SERVER_TARGET_NAMES),
                                 "local (a process on this host), docker, docker_ssh or swarm"),
    "action_server.host": _key(str, "127.0.0.1"),
    "action_server.port": _key(int, 5055, _port,
                               "stable port the Rasa server calls (the agent's forwarder)"),
    "action_server.actions_module": _key(str, "actions"),
    "action_server.env": _key(list, None, _env_names, nullable=True,
                              help="names of variables of the agent's environment the action "
                              "server (a local process, or the docker targets' containers) and "
                              "the action-code tests need; they get nothing else of it"),
    "action_server.start_timeout": _key(NUMBER, 180, _positive),
    # Docker action-server targets (docker, docker_ssh, swarm) and their image (issue 5).
    "action_server.backend_ports": _key(list, None, nullable=True,
                                        help="two ports new and old containers alternate on; "
                                        "default: port+1 and port+2"),
    "action_server.public_host": _key(str, None, nullable=True,
                                      help="how the Rasa server reaches the Docker host"),
    "action_server.instance": _key(str, "bot", help="names containers: rasa-actions-<instance>"),
    "action_server.keep_images": _key(int, 3, _positive, "images kept for rollback"),
    "action_server.docker_host": _key(str, None, nullable=True,
                                      help="engine of the docker/swarm targets; default "
                                      "DOCKER_HOST"),
    "action_server.command": _key(list, None, nullable=True,
                                  help="container command; `{port}` is filled in"),
    "action_server.ssh_host": _key(str, None, nullable=True),
    "action_server.ssh_port": _key(int, 22, _port),
    "action_server.ssh_user": _key(str, "root"),
    "action_server.ssh_key_file": _key(str, None, nullable=True),
    "action_server.ssh_known_hosts": _key(str, "~/.ssh/known_hosts"),
    "action_server.ssh_allow_unknown_hosts": _key(bool, False),
    "action_server.remote_docker_host": _key(str, None, nullable=True,
                                             help="the remote engine, e.g. "
                                             "unix:///var/run/docker.sock"),
    "action_server.replicas": _key(int, 1, _positive, "Swarm replicas"),
    "action_server.monitor": _key(NUMBER, 10, _positive,
                                  "seconds Swarm watches new tasks before an update counts"),
    "action_server.start_period": _key(NUMBER, 60, _positive,
                                       "seconds a new Swarm task's failing health checks "
                                       "don't count (how long the action server may take "
                                       "to start)"),
    "image.repository": _key(str, None, nullable=True,
                             help="where images go, e.g. registry.example.com/bot-actions"),
    "image.base_image": _key(str, "rasa/rasa-sdk", help="FROM of the default Dockerfile"),
    "image.sdk_version": _key(str, "3.6.2", help="tag of base_image when it has none"),
    "image.requirements": _key(str, None, nullable=True,
                               help="default: actions/requirements.txt or "
                               "requirements-actions.txt"),
    "image.docker_host": _key(str, None, nullable=True,
                              help="engine that builds and pushes; default DOCKER_HOST"),
    "image.source": _key(str, None, nullable=True, help="OCI source label; default: repo"),
    "image.build_network": _key(str, None, nullable=True,
                                help="network of build steps, e.g. host; default: the engine's"),
    "image.push": _key(bool, True),
    "image.push_attempts": _key(int, 4, _positive),
    "image.registry_user": _key(str, None, nullable=True,
                                help="with registry_password_env/_file; else the Docker "
                                "config's credentials"),
    "model.target": _key(str, "rasa_http", one_of("rasa_http", "model_server", "rasa_x"),
                         "rasa_http: a Rasa server's HTTP API (`PUT /model`, or blue/green "
                         "servers the agent runs: model.serving); model_server: Rasa servers "
                         "(model.pullers) pull each environment's model from the agent's "
                         "model server (README: Model server mode); rasa_x: Rasa X / Rasa "
                         "Enterprise's model API (README: Rasa X / Rasa Enterprise)"),
    # The Rasa X / Rasa Enterprise target (agent/targets/rasa_x.py).
    "model.rasa_x_url": _key(str, None, _url, nullable=True,
                             help="rasa_x: Rasa X's base URL, e.g. https://rasa-x.example.com"),
    "model.rasa_x_tag": _key(str, "production", help="rasa_x: the tag (deployment "
                             "environment) activating a model sets; its Rasa pulls that model"),
    "model.rasa_x_api_token_env": _key(str, None, nullable=True),
    "model.rasa_x_api_token_file": _key(str, None, nullable=True,
                                        help="rasa_x: Rasa X's api token (sent as ?api_token=); "
                                        "or model.rasa_x_username and a password"),
    "model.rasa_x_username": _key(str, None, nullable=True,
                                  help="rasa_x: a user who may manage models; the agent logs "
                                  "in with POST /api/auth and sends a Bearer token"),
    "model.rasa_x_password_env": _key(str, None, nullable=True),
    "model.rasa_x_password_file": _key(str, None, nullable=True,
                                       help="rasa_x: model.rasa_x_username's password"),
    "model.rasa_x_rest_url": _key(str, None, _url, nullable=True,
                                  help="rasa_x: the production Rasa's REST channel for the "
                                  "smoke test; default <rasa_x_url>/core/webhooks/rest/webhook"),
    # Model server mode (agent/model_server.py, agent/targets/model_server.py).
    "model.server_host": _key(str, "127.0.0.1",
                              help="model_server: the address the model server listens on "
                              "(0.0.0.0 for pullers on other hosts); one server for every "
                              "environment, set at the top level"),
    "model.server_port": _key(int, 5080, _port, "model_server: its port; a puller's "
                              "endpoints.yml has `models: url: "
                              "http://HOST:PORT/models/<environment>`"),
    "model.server_token_env": _key(str, None, nullable=True),
    "model.server_token_file": _key(str, None, nullable=True,
                                    help="model_server: the token pullers send (endpoints.yml "
                                    "`models: token:`); default: one the agent makes in "
                                    "<work_dir>/model-server/auth-token (0600)"),
    "model.server_token_name": _key(str, "token",
                                    help="model_server: the query parameter the token comes "
                                    "in (the pullers' `models: token_name:`)"),
    "model.pullers": _key(list, None, _pullers, nullable=True,
                          help="model_server: the Rasa servers that pull this environment's "
                          "model, [{name: NAME, url: http://HOST:5005}]; each must report the "
                          "release's model_id in GET /status (with model.auth_token) in time"),
    "model.wait_time_between_pulls": _key(NUMBER, 10, _positive,
                                          "model_server: the pullers' own `models: "
                                          "wait_time_between_pulls` (seconds)"),
    "model.pull_margin": _key(NUMBER, 60, _positive,
                              "model_server: seconds on top of wait_time_between_pulls for a "
                              "puller to download and load a model before it counts as failed"),
    "model.url": _key(str, "http://127.0.0.1:5005", _url),
    "model.manage_server": _key(bool, True,
                                help="the agent starts the Rasa server if it isn't running"),
    "model.auth_token_env": _key(str, None, nullable=True),
    "model.auth_token_file": _key(str, None, nullable=True),
    # rasa_http: JWT auth instead of the token (Rasa's --jwt-secret/--jwt-method).
    "model.jwt_secret_env": _key(str, None, nullable=True),
    "model.jwt_secret_file": _key(str, None, nullable=True,
                                  help="rasa_http: the Rasa server's --jwt-secret; the agent "
                                  "signs a short-lived admin JWT with it (Bearer)"),
    "model.jwt_method": _key(str, "HS256", one_of("HS256", "HS384", "HS512"),
                             "rasa_http: the server's --jwt-method"),
    # rasa_http: a Rasa server on another host, its models copied there over SFTP.
    "model.ssh_host": _key(str, None, nullable=True,
                           help="rasa_http: the Rasa server's host; each model is copied "
                           "over SFTP to model.remote_model_dir there (README: A Rasa "
                           "server on another host); needs model.manage_server: false"),
    "model.ssh_port": _key(int, 22, _port),
    "model.ssh_user": _key(str, "root"),
    "model.ssh_key_file": _key(str, None, nullable=True,
                               help="default: the SSH agent, then ~/.ssh's keys"),
    "model.ssh_known_hosts": _key(str, "~/.ssh/known_hosts",
                                  help="must name the host's key; an unknown key is refused"),
    "model.remote_model_dir": _key(str, None, nullable=True,
                                   help="model.ssh_host: the absolute folder the models go to, "
                                   "readable by the Rasa server there"),
    "model.remote_keep": _key(int, 3, _positive, "model.ssh_host: the agent's own models kept "
                              "there (others in the folder are never touched)"),
    "model.load_timeout": _key(NUMBER, 900, _positive),
    "model.serving": _key(str, None, one_of("put_model", "blue_green", "swarm"),
                          "blue_green (the default when the agent manages the server): each "
                          "model starts in its own `rasa run` beside the live one, HAProxy on "
                          "model.url's port switches to it once loaded and warmed, then the "
                          "old one drains; put_model (the default otherwise): the one server "
                          "loads each model with `PUT /model` (chat stalls while it loads); "
                          "swarm: the Rasa server as a Swarm service of model.replicas "
                          "replicas, updated rolling and start-first behind HAProxy (README: "
                          "The Rasa server as a Swarm service)",
                          nullable=True),
    "model.replicas": _key(int, 2, _positive, "swarm: the Rasa service's replicas"),
    "model.fleet_ports": _key(list, None, nullable=True,
                              help="swarm: the first port of each of the two port sets the "
                              "replicas alternate between (replica i of a release on "
                              "first + i - 1); default: model.url's port + 10 and + 20"),
    "model.rasa_repository": _key(str, None, nullable=True,
                                  help="swarm: a repository every Swarm node can pull from, "
                                  "e.g. registry.example.com/bot-rasa; each release's Rasa "
                                  "image is pushed there (image.registry_user and its "
                                  "password) and replicas run on any node; without it they "
                                  "run on the engine's own node, where the image is built"),
    "model.fleet_monitor": _key(NUMBER, 5, _positive,
                                "swarm: seconds Swarm watches a new replica before the "
                                "update goes on"),
    "model.drain_timeout": _key(NUMBER, 30, _positive,
                                "blue_green: seconds the old server may finish its in-flight "
                                "requests before it is cut and stopped"),
    "model.standby": _key(bool, None, nullable=True,
                          help="blue_green: a second `rasa run` with the live model that "
                          "HAProxy sends requests to the moment the live one dies, kept by "
                          "`agent run` (one more Rasa process's memory); default: on for "
                          "runtime process, off (not supported yet) for runtime docker"),
    "model.warmup": _key(list, None, _strings, nullable=True,
                         help="blue_green: messages sent to a new server before any user "
                         "reaches it; default: the first turn of each smoke conversation, "
                         "else `hello`"),
    "model.haproxy": _key(str, "haproxy", help="blue_green: the HAProxy executable"),
    "model.runtime": _key(str, "process", one_of("process", "docker"),
                          "blue_green: where the slots' Rasa servers run: process (`rasa run` "
                          "on this host) or docker (a container of each release on the Docker "
                          "host of action_server.target docker or docker_ssh)"),
    "model.rasa_image": _key(str, "rasa/rasa:3.6.21-full",
                             help="runtime docker: the Rasa image each release's image is "
                             "built FROM"),
    "model.slot_ports": _key(list, None, nullable=True,
                             help="runtime docker: the blue and green servers' ports on the "
                             "Docker host; default: model.url's port + 1 and + 2"),
    "model.public_host": _key(str, None, nullable=True,
                              help="runtime docker: where HAProxy reaches those ports; "
                              "default: action_server.ssh_host (docker_ssh), else 127.0.0.1"),
    "smoke.conversations": _key(list, None, _conversations, nullable=True,
                                help="after switching, each turn's reply must contain `expect`"),
    "smoke.rollback": _key(bool, True, help="roll back automatically when the smoke test fails"),
    "nlu_gate.enabled": _key(bool, False, help="compare NLU F1 with production before promoting"),
    "nlu_gate.folds": _key(int, 3, _positive, "cross-validation folds of the comparison"),
    "nlu_gate.max_macro_f1_drop": _key(NUMBER, 0.02, nullable=True,
                                       help="fail when macro F1 drops by more (0 to 1)"),
    "nlu_gate.max_intent_f1_drop": _key(NUMBER, 0.1, nullable=True,
                                        help="fail when any intent's F1 drops by more"),
    "notify": _key(list, None, check_notify, nullable=True,
                   help="where people hear about releases: [{type: webhook, url_env: VAR}, "
                   "{type: github, repository: OWNER/NAME, token_env: VAR}, {type: gitlab, "
                   "project: ID or GROUP/NAME, token_env: VAR}] (README: Notifications)"),
    "environments": _key(dict, None, nullable=True,
                         help="per environment, in promotion order: {promote: auto|"
                         "auto_unless_action_code|manual, after: ENV, verify: {smoke, "
                         "soak_seconds, nlu_gate}, action_server: {...}, model: {...}} "
                         "(agent/environments.py)"),
}

BLOCKS = {key.split(".", 1)[0] for key in SCHEMA if "." in key}
