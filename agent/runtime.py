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

from dataclasses import dataclass

from agent.config import AgentConfig, Environment
from agent.journal import Journal
from agent.progress import Progress
from agent.repo import Mirror
from agent.targets.factory import Targets, agent_secret_env, build_targets
from hooks.core.child_env import withhold

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

    @classmethod
    def open(cls, config: AgentConfig, progress: Progress | None = None) -> Agent:
        redact = config.redactor()
        progress = progress or Progress(redact=redact)
        progress.redact = redact
        # Whatever the agent runs for itself (git, the forwarder) needs none of
        # the variables its secrets come from; the commit's code never gets them.
        withhold(agent_secret_env(config))
        targets = build_targets(config)
        for secret in (*targets.action_server.secrets(), *targets.model.secrets()):
            redact.add(secret)
        work = config.work_dir
        work.mkdir(parents=True, exist_ok=True)
        journal = Journal(work / "journal.sqlite")
        mirror = Mirror(config.repo, config.branch, work / "repo.git")
        return cls(config, journal, mirror, targets, progress)

    @property
    def environment(self) -> Environment:
        # Releases flow into the first environment; later ones are promoted to.
        return self.config.environments[0]

    def close(self) -> None:
        self.journal.close()
