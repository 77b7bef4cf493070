"""A tiny stand-in for `ollama serve` used by the lifecycle tests: starts in milliseconds.

Listens on OLLAMA_HOST; `GET /` answers like Ollama, `POST /api/show` knows FAKE_OLLAMA_MODELS
(comma-separated), `GET /die` makes the process exit at once (a crash mid-run). With
FAKE_OLLAMA_CHILD=1 it spawns a child process first, as Ollama spawns its runners; with
FAKE_OLLAMA_ALSO_ALL_INTERFACES=1 it also listens on every interface (a server bench must stop).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = set(filter(None, os.environ.get("FAKE_OLLAMA_MODELS", "").split(",")))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/die":
            print("fatal: simulated crash", flush=True)
            os._exit(3)
        self._reply(200, b"Ollama is running", "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length", "0"))
        name = json.loads(self.rfile.read(length) or b"{}").get("model", "")
        if self.path == "/api/show" and name in MODELS:
            self._reply(200, json.dumps({"details": {"family": "llama"}, "model_info": {}}).encode())
        else:
            self._reply(404, json.dumps({"error": f'model "{name}" not found, try pulling it first'}).encode())


def main() -> None:
    host, _, port = os.environ["OLLAMA_HOST"].rpartition(":")
    if os.environ.get("FAKE_OLLAMA_CHILD") == "1":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    if os.environ.get("FAKE_OLLAMA_ALSO_ALL_INTERFACES") == "1":
        exposed = socket.socket()
        exposed.bind(("", 0))  # "" is every interface: what a careless script does
        exposed.listen()
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    print(f"Listening on {os.environ['OLLAMA_HOST']} NUM_PARALLEL={os.environ.get('OLLAMA_NUM_PARALLEL')}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
