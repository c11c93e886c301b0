"""The environment a command gets: ours, or only the basics for a commit's code.

The deploy agent's steps run code from the commit being released: custom
components in `rasa train` and `rasa test`, action code in the action server
and its tests. That code must not read the agent's secrets (the Rasa token, a
registry password, an SSH key passphrase), which live in the agent's own
environment. Inside `commit_environment(extra)` every command `run` and
`spawn` start gets only `MINIMAL_ENV` from ours plus `extra` (the variables
the config names for the bot), instead of everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
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
_COMMIT_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("rasa_gitops_commit_env",
                                                               default=None)


def minimal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`MINIMAL_ENV` taken from ours, plus `extra`."""
    env = {name: os.environ[name] for name in MINIMAL_ENV if name in os.environ}
    env.update(extra or {})
    return env


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
    full = {} if not inherit else dict(inside) if inside is not None else dict(os.environ)
    full.update(QUIET_RASA_ENV)
    full.update(env or {})
    return full
