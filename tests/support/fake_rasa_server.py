"""A stand-in for `rasa run --enable-api` that starts in half a second, for the
blue/green target's fast tests (crashes at each kill point, failed loads and
warm-ups) where a real server would take 15 s per start.

It serves what the target uses, as Rasa 3.6 does: `GET /status` (token
checked; 409 "No agent loaded" when the model can't be loaded), `POST
/model/parse`, the REST channel (replies `model <model_id>`; the message
"fail" gets HTTP 500) and `GET /`. A model file is "loadable" when the archive
holds more than its metadata.json, which `fake_model` writes.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

SCRIPT = r'''
import http.server, json, socketserver, sys, tarfile, time

args = sys.argv[1:]
assert args[0] == "run", args


def opt(name):
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise SystemExit(f"rasa run: {name} missing")


port, host, token = int(opt("--port")), opt("--interface"), opt("--auth-token")
time.sleep(0.5)  # "loading"
with tarfile.open(opt("--model"), "r:gz") as archive:
    names = archive.getnames()
    meta = json.load(archive.extractfile("metadata.json"))
model_id = meta["model_id"] if len(names) > 1 else None
NO_AGENT = {"message": "No agent loaded"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if not self.path.startswith("/status"):
            return self.reply(200, {"hello": "Hello from Rasa"})
        if f"token={token}" not in self.path:
            return self.reply(401, {})
        return self.reply(200, {"model_id": model_id}) if model_id else self.reply(409, NO_AGENT)

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if model_id is None:
            return self.reply(409, NO_AGENT)
        if self.path.startswith("/model/parse"):
            return self.reply(200, {"intent": {"name": "greet"}})
        if not self.path.startswith("/webhooks/rest/webhook"):
            return self.reply(404, {})
        if data.get("message") == "fail":
            return self.reply(500, {"message": "boom"})
        return self.reply(200, [{"recipient_id": data["sender"], "text": f"model {model_id}"}])

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


Server((host, port), Handler).serve_forever()
'''


def fake_rasa_server(folder: Path) -> Path:
    """Write the stand-in as an executable `folder/rasa` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rasa"
    path.write_text(f"#!{sys.executable}\n{SCRIPT}", encoding="utf-8")
    path.chmod(0o755)
    return path


def fake_model(path: Path, model_id: str, *, loadable: bool = True) -> Path:
    """A model archive whose metadata.json names `model_id`."""
    files = {"metadata.json": json.dumps({"model_id": model_id}).encode()}
    if loadable:
        files["components/fake"] = b"fake"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
