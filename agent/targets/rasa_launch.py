"""How the agent starts `rasa run` without its auth token on a command line.

Rasa 3.6 takes the API token only as `--auth-token`, so a plain `rasa run`
shows it to every local user in `ps` and /proc/<pid>/cmdline. Instead the
agent starts Rasa's own Python with a few lines of launcher code: it reads
the token from its standard input (a container: from a file copied into it
before it starts, `container_entrypoint`), appends `--auth-token=<token>` to
`sys.argv` inside the process (the kernel's copy of the command line never
changes) and runs the Rasa command's script or module as `__main__`, as its
console script would.

`rasa_command` forms this handles: a Python script (the `rasa` console script,
or any script with a `python` `#!` line), and `python -m rasa`. Anything else
(a shell wrapper) can only take the token on its command line: `launch` says
so through `warn`, once per start, naming the fix.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hooks.core.interpreter import shebang_python

# Runs inside Rasa's interpreter: `-c` code, then "path <script>" or
# "module <name>", then Rasa's arguments. Standard input holds one line, the
# token; it is read before Rasa starts (Rasa never reads stdin in `run`).
LAUNCHER = """\
import os, runpy, sys
kind, target, *args = sys.argv[1:]
env_file = os.environ.pop("RASA_GITOPS_ENV_FILE", "")
if env_file:
    import json
    with open(env_file, encoding="utf-8") as f:
        os.environ.update(json.load(f))
token_file = os.environ.pop("RASA_GITOPS_TOKEN_FILE", "")
if token_file:
    with open(token_file, encoding="utf-8") as f:
        token = f.read().strip()
else:
    token = sys.stdin.readline().rstrip("\\n")
    sys.stdin.close()
sys.argv = [target, *args, "--auth-token=" + token]
if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
"""


# A container gets its token as a file instead (standard input is awkward to
# reach through an engine, maybe over SSH): the agent copies it into the
# container before it starts, readable by the image's user only.
TOKEN_FILE_VARIABLE = "RASA_GITOPS_TOKEN_FILE"
# A Swarm task gets the bot's ${VAR} values as a JSON file too (a secret),
# not in its service spec, which `docker service inspect` shows.
ENV_FILE_VARIABLE = "RASA_GITOPS_ENV_FILE"


def container_entrypoint(python: str = "python") -> list[str]:
    """The entrypoint that runs `python -m rasa <command>` with the token read
    from the file `TOKEN_FILE_VARIABLE` names, appended in-process."""
    return [python, "-c", LAUNCHER, "module", "rasa"]


@dataclass(frozen=True)
class Launch:
    """A Rasa start: the command line (no secret in it) and its standard input."""

    argv: list[str]
    stdin: str  # "" when the token had to go on the command line


def launch(rasa_argv: Sequence[str], args: Sequence[str], token: str,
           warn: Callable[[str], None]) -> Launch:
    """`rasa_argv` + `args` + the token, with the token on standard input."""
    command = [str(part) for part in rasa_argv]
    if len(command) >= 3 and "python" in Path(command[0]).name and command[1] == "-m":
        runner = [command[0], "-c", LAUNCHER, "module", command[2], *command[3:]]
        return Launch([*runner, *args], token + "\n")
    interpreter = shebang_python(command[0]) if command else None
    if interpreter is not None:
        script = shutil.which(command[0]) or command[0]
        return Launch([interpreter, "-c", LAUNCHER, "path", script, *command[1:], *args],
                      token + "\n")
    warn(f"rasa_command `{' '.join(command)}` is not a Python script or `python -m rasa`, so "
         "the Rasa server's auth token is on its command line, visible to local users "
         "in `ps`; point rasa_command at Rasa's own `rasa` script to keep it off")
    # `=`: a token may start with "-", which argparse would take for an option.
    return Launch([*command, *args, f"--auth-token={token}"], "")
