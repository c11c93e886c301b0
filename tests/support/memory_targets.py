"""In-memory action-server and model targets, for the fast unit layer of the switch.

They implement the target Protocols of `agent.targets.base` without a process,
a port or Rasa. Both share one `Serving` record of what is live, which checks
the agent's invariant at every change: every custom action the live model may
call is served by the live action server. A test reads `serving.violations`
(empty when the invariant always held) and `serving.history` (every switch, in
order), and can make any method fail at its n-th call (`fail_at`), as a real
target raises DeployError with the live state unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import load_config
from agent.journal import PROMOTED, QUEUED, STAGED, Journal, ReleaseStatus
from agent.progress import Progress
from agent.repo import Mirror
from agent.runtime import Agent
from agent.steps import StepContext
from agent.targets.base import (
    ActionServerDeployment,
    ActionServerSpec,
    DeployError,
    Health,
    LogSink,
    ModelRef,
)
from agent.targets.factory import Targets


@dataclass
class Serving:
    """What serves now, shared by the two memory targets."""

    model_actions: dict[str, frozenset[str]] = field(default_factory=dict)  # model_id -> calls
    live_model: str | None = None
    live_config: str = ""  # the bot config the live model serves with (bot_config)
    live_server: ActionServerDeployment | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (what, release or model)
    violations: list[str] = field(default_factory=list)

    def check(self, after: str) -> None:
        calls = self.model_actions.get(self.live_model or "", frozenset())
        served = self.live_server.served_actions if self.live_server else frozenset()
        missing = sorted(calls - served)
        if missing:
            self.violations.append(f"after {after}: model {self.live_model} calls "
                                   f"{', '.join(missing)}, not served")

    def switch_model(self, model_id: str) -> None:
        self.live_model = model_id
        self.history.append(("model", model_id))
        self.check(f"model -> {model_id}")

    def switch_server(self, deployment: ActionServerDeployment) -> None:
        self.live_server = deployment
        self.history.append(("action_server", deployment.release_id))
        self.check(f"action server -> release {deployment.release_id}")


class Failures:
    """Which call of which method raises DeployError: `fail_at["activate"] = {2}`."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail_at: dict[str, set[int]] = {}

    def call(self, method: str) -> None:
        self.calls[method] += 1
        if self.calls[method] in self.fail_at.get(method, set()):
            raise DeployError(f"{method} failed (call {self.calls[method]}, as the test asked)")


class MemoryActionServer:
    """An action server target: `deploy` serves exactly the spec's required actions
    (plus `extra_served`), `reactivate` puts a recorded deployment back."""

    name = "memory"

    def __init__(self, serving: Serving, extra_served: frozenset[str] = frozenset()) -> None:
        self.serving = serving
        self.extra_served = extra_served
        self.failures = Failures()
        self.stopped = False

    @property
    def url(self) -> str:
        return "memory://actions"

    def deploy(self, spec: ActionServerSpec, log: LogSink) -> ActionServerDeployment:
        self.failures.call("deploy")
        deployment = ActionServerDeployment(
            spec.release_id, f"memory://actions/{spec.release_id}",
            spec.required_actions | self.extra_served, {"release": spec.release_id})
        self.serving.switch_server(deployment)
        # A rollout that breaks once its router switched (the connection cut while
        # the old server stops): `fail_at["deploy.after_switch"]`.
        self.failures.call("deploy.after_switch")
        log(f"memory action server of release {spec.release_id} is live")
        return deployment

    def live(self) -> ActionServerDeployment | None:
        self.failures.call("live")
        return self.serving.live_server

    def served_actions(self) -> frozenset[str]:
        live = self.serving.live_server
        return live.served_actions if live else frozenset()

    def reactivate(self, deployment: ActionServerDeployment, log: LogSink) -> None:
        self.failures.call("reactivate")
        self.serving.switch_server(deployment)
        log(f"memory action server of release {deployment.release_id} is live again")

    def stop_all(self, log: LogSink) -> None:
        self.stopped = True
        self.serving.live_server = None

    def health(self) -> list[Health]:
        return []  # nothing runs to die

    def revive(self, log: LogSink) -> list[str]:
        return []

    def secrets(self) -> list[str]:
        return []


def bot_config(bot_dir: str) -> str:
    """The bot config a model serves with: its endpoints.yml and credentials.yml,
    as a target that starts its own Rasa server (blue/green) serves them."""
    texts = [(Path(bot_dir) / name).read_text(encoding="utf-8") if bot_dir
             and (Path(bot_dir) / name).is_file() else "" for name in ("endpoints.yml",
                                                                     "credentials.yml")]
    return "\n".join(texts).strip()


class MemoryModel:
    """A model target: a model file's text is its model id; `talk` answers with
    `answers[live model id]` (default `["Hi!"]`). Like the blue/green target, a
    changed bot config (`bot_config`) with the same model is a switch too."""

    name = "memory"

    def __init__(self, serving: Serving, answers: dict[str, list[str]] | None = None) -> None:
        self.serving = serving
        self.answers = answers or {}
        self.failures = Failures()
        self.stopped = False

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        self.failures.call("upload")
        return ModelRef(release_id, model.read_text(encoding="utf-8").strip(), str(model),
                        str(bot_dir) if bot_dir else "")

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        self.failures.call("activate")
        config = bot_config(ref.bot_dir)
        if self.serving.live_model != ref.model_id or self.serving.live_config != config:
            self.serving.live_config = config
            self.serving.switch_model(ref.model_id)
        log(f"model {ref.model_id} is live")

    def live_model_id(self) -> str | None:
        self.failures.call("live_model_id")
        return self.serving.live_model

    def serves(self, ref: ModelRef) -> bool:
        # through live_model_id: a server made "down" there is down here too
        return (self.live_model_id() == ref.model_id
                and self.serving.live_config == bot_config(ref.bot_dir))

    def talk(self, sender: str, text: str) -> list[str]:
        self.failures.call("talk")
        return list(self.answers.get(self.serving.live_model or "", ["Hi!"]))

    def server_answers(self) -> bool:
        return "live_model_id" not in self.failures.fail_at

    def ensure_server(self, log: LogSink) -> bool:
        self.failures.call("ensure_server")
        return False  # like a Rasa server the agent does not manage

    def stop_all(self, log: LogSink) -> None:
        self.stopped = True

    def health(self) -> list[Health]:
        return []  # like a Rasa server the agent does not manage

    def secrets(self) -> list[str]:
        return []


# ------------------------------------------------------------ a deploy host in memory


@dataclass
class World:
    """An agent whose targets are in memory, over a real journal and config."""

    agent: Agent
    serving: Serving
    actions: MemoryActionServer
    model: MemoryModel
    root: Path
    lines: list[str] = field(default_factory=list)  # what the steps logged

    @property
    def journal(self) -> Journal:
        return self.agent.journal

    def release(self, *, model_id: str, calls: set[str], code: str, status: ReleaseStatus = STAGED,
                served: set[str] | None = None, live: bool = False,
                environment: str = "production", credentials: str = "") -> int:
        """A release in the journal with a kept model and worktree, as its gates left it.

        `calls`: the custom actions its model calls; `code`: its action-code
        fingerprint. `status=QUEUED` leaves it as the tick creates it (for
        `run_release`); `status=PROMOTED` also moves the production pointer to it,
        and `live=True` makes its model and action server (serving `served`,
        default `calls`) the live ones. `credentials`: its bot's credentials.yml."""
        journal = self.agent.journal
        release = journal.new_release(environment=environment, commit=f"{model_id:0<40}"[:40],
                                      branch="main", author="test", message=model_id)
        model = self.root / "models" / f"{model_id}.tar.gz"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_text(model_id, encoding="utf-8")
        worktree = self.root / "releases" / f"release-{release.id}"
        worktree.mkdir(parents=True, exist_ok=True)
        if credentials:
            (worktree / "credentials.yml").write_text(credentials, encoding="utf-8")
        self.serving.model_actions[model_id] = frozenset(calls)
        server = ActionServerDeployment(str(release.id), f"memory://actions/{release.id}",
                                        frozenset(calls if served is None else served))
        journal.update_release(
            release.id, worktree=str(worktree), model_path=str(model), model_id=model_id,
            required_actions=sorted(calls), action_code_fingerprint=code,
            action_server={"target": "memory", "url": server.url,
                           "served_actions": sorted(server.served_actions), "handle": {}}
            if status == PROMOTED else None,
        )
        if status != QUEUED:  # a queued release is one the tick just created
            journal.start_release(release.id)
            journal.finish_release(release.id, status, promote_environment=environment
                                   if status == PROMOTED else None)
        if live:
            self.serving.live_model = model_id
            self.serving.live_config = bot_config(str(worktree))
            self.serving.live_server = server
        return release.id


    def context(self, release_id: int) -> StepContext:
        """The StepContext a release (or `agent promote`) gives its switch steps."""
        release = self.journal.release(release_id)
        return StepContext(
            config=self.agent.config, journal=self.journal, mirror=self.agent.mirror,
            targets=self.agent.targets, release_id=release_id, commit=release.commit,
            rasa_argv=["rasa"], log=self.lines.append,
            worktree=Path(release.worktree or self.root),
            production=self.journal.production_release("production"))


def memory_world(root: Path, config: str = "") -> World:
    """A World under `root`; `config` is extra agent.yml text (e.g. a smoke block)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "agent.yml"
    path.write_text(f"repo: {root / 'bot.git'}\nwork_dir: {root / 'work'}\n"
                    "model:\n  manage_server: false\n" + config, encoding="utf-8")
    cfg = load_config(path)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    serving = Serving()
    actions, model = MemoryActionServer(serving), MemoryModel(serving)
    agent = Agent(cfg, Journal(cfg.work_dir / "journal.sqlite"),
                  Mirror(cfg.repo, cfg.branch, cfg.work_dir / "repo.git"),
                  Targets(actions, model), Progress(quiet=True))
    return World(agent, serving, actions, model, root)


def add_memory_place(world: World, environment: str) -> Serving:
    """Another environment's own servers, in memory: what serves there."""
    serving = Serving()
    world.agent.places[environment] = Targets(MemoryActionServer(serving), MemoryModel(serving))
    return serving
