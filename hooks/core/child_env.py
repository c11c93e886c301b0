"""The environment a command gets: ours, or only the basics for a commit's code.

The deploy agent's steps run code from the commit being released: custom
components in `rasa train` and `rasa test`, action code in the action server
and its tests. That code must not read the agent's secrets (the Rasa token, a
registry password, an SSH key passphrase), which live in the agent's own
environment. Inside `commit_environment(extra)` every command `run` and
`spawn` start gets only `MINIMAL_ENV` from ours plus `extra` (the variables
the config names for the bot), instead of everything. Outside it, a command
gets ours but for the variables `withhold` names (those the agent reads its
own secrets from): git and the agent's helpers need none of them either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

QUIET_RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONWARNINGS": "ignore",
}
# What Rasa and a bot's Python need to run; nothing here holds a secret.
MINIMAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
               "TMPDIR", "PYENV_VERSION", "PYENV_ROOT", "VIRTUAL_ENV", "PYTHONPATH",
               "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
# Variables no command gets, even with our whole environment: those the agent
# reads its own secrets from (`withhold`). git, the forwarder, anything the
# agent runs for itself needs none of them; the agent reads them in-process.
_WITHHELD: set[str] = set()
_COMMIT_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("rasa_gitops_commit_env",
                                                               default=None)


def minimal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`MINIMAL_ENV` taken from ours, plus `extra`."""
    env = {name: os.environ[name] for name in MINIMAL_ENV if name in os.environ}
    env.update(extra or {})
    return env


def withhold(names: Iterable[str]) -> None:
    """From now on, no command this process starts gets the variables `names`."""
    _WITHHELD.update(names)


def passed_env(names: Iterable[str] | None) -> dict[str, str]:
    """The variables `names` (the config's `pipeline.env` / `action_server.env`)
    that are set in ours: what the bot's code is given on top of `MINIMAL_ENV`."""
    return {name: os.environ[name] for name in names or () if name in os.environ}


@contextmanager
def commit_environment(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Commands started inside the block (in this thread) get `minimal_env(extra)`."""
    token = _COMMIT_ENV.set(minimal_env(extra))
    try:
        yield
    finally:
        _COMMIT_ENV.reset(token)


def child_env(env: Mapping[str, str] | None, *, inherit: bool = True) -> dict[str, str]:
    """A command's environment: ours (or, inside `commit_environment`, the
    minimal one; nothing with `inherit=False`), Rasa's quiet settings, `env`."""
    inside = _COMMIT_ENV.get()
    full = {} if not inherit else dict(inside) if inside is not None else {
        name: value for name, value in os.environ.items() if name not in _WITHHELD}
    full.update(QUIET_RASA_ENV)
    full.update(env or {})
    return full
