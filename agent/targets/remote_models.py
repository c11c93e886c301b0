"""Model files on the host of a Rasa server the agent does not share a disk with.

`rasa_http` with `model.ssh_host` copies each model over SFTP (paramiko, the
host key checked against known_hosts by `connect_ssh`) into `model.remote_model_dir`
on that host, and hands Rasa's `PUT /model` the remote path.

- A copy is atomic: the bytes go to a hidden temporary name in the same folder,
  their size is checked, then one `posix-rename` gives the final name, so Rasa
  never sees a half-written model.
- A file's name carries its content's SHA-256 (and the release id, for people
  reading /status), so a model already there with the same name and size is
  not sent again.
- Only the agent's own files are ever deleted: names that match this place's
  pattern exactly (`rasa-gitops-[<place>-]r<release>-<sha16>.tar.gz`), beyond
  the `keep` most recently used, and never the one just activated. Another
  environment's files (another place in the name) and anything else in the
  folder are left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko

from agent.targets.base import DeployError, LogSink
from agent.targets.docker.ssh import SshSettings, connect_ssh

PREFIX = "rasa-gitops-"
STALE_PART = 3600.0  # seconds: a temporary file this old is a crashed upload's


def _safe(text: str) -> str:
    """Letters, digits, `.` and `_`: a name part that can't contain the separator."""
    return re.sub(r"[^A-Za-z0-9._]", "_", text)


class RemoteModels:
    """The model folder on the Rasa server's host, reached over SFTP."""

    def __init__(self, settings: SshSettings, model_dir: str, *, keep: int = 3,
                 place: str = "") -> None:
        if not posixpath.isabs(model_dir):
            raise DeployError(f"the remote model folder {model_dir!r} must be an absolute "
                              "path on the Rasa server's host")
        self.settings = settings
        self.model_dir = posixpath.normpath(model_dir)
        self.keep = max(1, keep)
        self._prefix = PREFIX + (f"{_safe(place)}-" if place else "")
        name = rf"{re.escape(self._prefix)}r[A-Za-z0-9._]+-[0-9a-f]{{16}}\.tar\.gz"
        self._ours = re.compile(rf"^{name}$")
        self._part = re.compile(rf"^\.{name}\.[0-9a-f]{{8}}\.part$")  # see `put`
        self._hashes: dict[tuple[str, int, int], str] = {}

    @property
    def where(self) -> str:
        return f"{self.settings.user}@{self.settings.host}:{self.model_dir}"

    def remote_path(self, release_id: str, model: Path) -> str:
        name = f"{self._prefix}r{_safe(release_id)}-{self._sha256(model)[:16]}.tar.gz"
        return posixpath.join(self.model_dir, name)

    def put(self, release_id: str, model: Path, log: LogSink) -> str:
        """The remote path of `model`, copied there unless it already is."""
        target = self.remote_path(release_id, model)
        size = model.stat().st_size
        with self._sftp() as sftp:
            present = _size(sftp, target)
            if present == size:
                log(f"model already on {self.settings.host}: {target}")
                return target
            part = posixpath.join(self.model_dir,
                                  f".{posixpath.basename(target)}.{secrets.token_hex(4)}.part")
            log(f"copying the model to {self.settings.host}:{target} over SFTP "
                f"({size / 1e6:.1f} MB)")
            try:
                sftp.put(str(model), part, confirm=True)  # confirm: stat()s the size
                _replace(sftp, part, target)
            except (OSError, paramiko.SSHException) as exc:
                with contextlib.suppress(OSError, paramiko.SSHException):
                    sftp.remove(part)
                raise DeployError(f"copying the model to {self.where} failed: "
                                  f"{self.settings.scrub(_reason(exc))}") from None
        return target

    def keep_newest(self, live: str, log: LogSink) -> None:
        """Mark `live` as just used, then delete the agent's own older models
        beyond `keep` (never `live`) and its crashed uploads' temporary files."""
        with self._sftp() as sftp:
            with contextlib.suppress(OSError):
                sftp.utime(live, None)
            try:
                entries = sftp.listdir_attr(self.model_dir)
            except OSError as exc:
                log(f"could not list {self.where} to remove old models: {_reason(exc)}")
                return
            ours = sorted((e for e in entries if self._ours.match(e.filename)
                           and posixpath.join(self.model_dir, e.filename) != live),
                          key=lambda e: e.st_mtime or 0, reverse=True)
            now = time.time()
            parts = [e for e in entries if self._part.match(e.filename)
                     and now - (e.st_mtime or now) > STALE_PART]
            for entry in ours[self.keep - 1:] + parts:
                path = posixpath.join(self.model_dir, entry.filename)
                try:
                    sftp.remove(path)
                    log(f"removed old model {path} on {self.settings.host}")
                except OSError as exc:
                    log(f"could not remove {path} on {self.settings.host}: {_reason(exc)}")

    def check(self) -> str:
        """`agent doctor`: SFTP logs in and the folder is there; nothing is written."""
        with self._sftp() as sftp:
            ours = [n for n in sftp.listdir(self.model_dir) if self._ours.match(n)]
        return f"SFTP to {self.where} works; {len(ours)} model(s) of the agent's there"

    @contextlib.contextmanager
    def _sftp(self) -> Iterator[paramiko.SFTPClient]:
        client = connect_ssh(self.settings)  # DeployError names a bad or unknown host key
        try:
            try:
                sftp = client.open_sftp()
            except (OSError, paramiko.SSHException) as exc:
                raise DeployError(f"SFTP to {self.settings.host}:{self.settings.port} failed: "
                                  f"{self.settings.scrub(_reason(exc))}; does its sshd offer "
                                  "SFTP (`Subsystem sftp` in sshd_config)?") from None
            with sftp:
                self._check_dir(sftp)
                yield sftp
        finally:
            client.close()

    def _check_dir(self, sftp: paramiko.SFTPClient) -> None:
        try:
            mode = sftp.stat(self.model_dir).st_mode
        except OSError as exc:
            raise DeployError(f"the remote model folder {self.where} can't be used: "
                              f"{_reason(exc)}; create it (writable by "
                              f"{self.settings.user}, readable by the Rasa server)") from None
        if mode is None or not stat.S_ISDIR(mode):
            raise DeployError(f"{self.where} is not a folder")

    def _sha256(self, model: Path) -> str:
        info = model.stat()
        key = (str(model.resolve()), info.st_size, info.st_mtime_ns)
        if key not in self._hashes:
            digest = hashlib.sha256()
            with model.open("rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
            self._hashes[key] = digest.hexdigest()
        return self._hashes[key]


def _replace(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
    """`source` renamed to `target`, replacing it: OpenSSH's posix-rename, else
    (a server without that extension) SFTP's own rename, which replaces nothing."""
    try:
        sftp.posix_rename(source, target)
    except (OSError, paramiko.SSHException):
        if _size(sftp, target) is not None:
            sftp.remove(target)
        sftp.rename(source, target)


def _size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except OSError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
