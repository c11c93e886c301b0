"""The composition root: one `Agent` holds what every command and tick works with.

`Agent.open` reads nothing but the config: it builds the redactor (every
configured secret and every secret a target made), the progress printer, the
targets, the journal and the repository mirror, once. The tick, the release
runner, the switch and the CLI's commands receive this object; none of them
builds a part of it again. DEPLOY_LOCK names the journal lock that serialises
everything that changes what serves (held only while it changes: see
`agent.deploy_lock`); PIPELINE_LOCK lets one release pipeline run at a time
(the daemon's or `agent once`'s tick, gates included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.config import LEGACY_DIRS, LEGACY_OWNER, AgentConfig, Environment, legacy_owner
from agent.journal import Journal
from agent.progress import Progress
from agent.repo import Mirror
from agent.targets.factory import Targets, agent_secret_env, build_targets
from hooks.core.child_env import withhold
from hooks.core.errors import FatalError

DEPLOY_LOCK = "deploy"
PIPELINE_LOCK = "pipeline"


@dataclass
class Agent:
    config: AgentConfig
    journal: Journal
    mirror: Mirror
    targets: Targets
    progress: Progress
    stop_requested: bool = False  # SIGTERM: finish the switch in progress, start no long step
    in_long_step: bool = False  # SIGTERM may abandon the step that runs now
    # Every environment's own servers (agent/environments.py); `targets` is the
    # first environment's, where releases flow in.
    places: dict[str, Targets] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.places.setdefault(self.config.environments[0].name, self.targets)

    @classmethod
    def open(cls, config: AgentConfig, progress: Progress | None = None) -> Agent:
        redact = config.redactor()
        progress = progress or Progress(redact=redact)
        progress.redact = redact
        # Whatever the agent runs for itself (git, the forwarder) needs none of
        # the variables its secrets come from; the commit's code never gets them.
        withhold(agent_secret_env(config))
        work = config.work_dir
        work.mkdir(parents=True, exist_ok=True)
        journal = Journal(work / "journal.sqlite")
        try:
            claim_legacy_layout(config, journal)
            places = {env.name: build_targets(config.for_environment(env.name))
                      for env in config.environments}
        except BaseException:
            journal.close()
            raise
        for targets in places.values():
            for secret in (*targets.action_server.secrets(), *targets.model.secrets()):
                redact.add(secret)
        mirror = Mirror(config.repo, config.branch, work / "repo.git")
        first = places[config.environments[0].name]
        return cls(config, journal, mirror, first, progress, places=places)

    @property
    def environment(self) -> Environment:
        # Releases flow into the first environment; later ones are promoted to.
        return self.config.environments[0]

    def place(self, environment: str) -> Targets:
        """The targets of `environment`: its own action server and Rasa server."""
        try:
            return self.places[environment]
        except KeyError:
            raise FatalError(f"{self.config.path}: environments: no environment "
                             f"{environment!r} (known: {', '.join(self.places)})") from None

    def close(self) -> None:
        self.journal.close()


def claim_legacy_layout(config: AgentConfig, journal: Journal) -> None:
    """With several environments, name the one whose servers live in work_dir's
    single-environment layout (agent/config.py LEGACY_OWNER): the environment
    the journal has live, so adding `staging:` before `production:` leaves
    production its running servers. Done once; refused when it can't be told."""
    if len(config.environments) < 2 or legacy_owner(config.work_dir) is not None:
        return
    if not any((config.work_dir / name).exists() for name in LEGACY_DIRS):
        return  # nothing ran in the old layout: every environment has its own folder
    live = [env.name for env in config.environments if journal.production(env.name)]
    if len(live) > 1:
        raise FatalError(f"{config.work_dir}: servers of a single environment are in the "
                         f"work dir, and {', '.join(live)} are all live: write the name of "
                         f"the one they serve into {config.work_dir / LEGACY_OWNER}")
    owner = live[0] if live else config.environments[0].name
    (config.work_dir / LEGACY_OWNER).write_text(owner + "\n", encoding="utf-8")
