"""Read-only questions to a running Ollama server: its address, its models, a model's /api/show.

Used by `bench kv` (and anything else that needs a model's architecture). Errors a user can cause
(server down, model missing) become one-line TargetErrors.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from bench.errors import TargetError

DEFAULT_PORT = 11434


def default_base_url(ollama_host: str | None = None) -> str:
    """The server address Ollama's own clients use: OLLAMA_HOST (envconfig.Host), else 127.0.0.1:11434.

    Scheme optional (http assumed); an explicit http:// or https:// without a port means 80 / 443;
    0.0.0.0 (a listen address) is reached through 127.0.0.1.
    """
    raw = (os.environ.get("OLLAMA_HOST", "") if ollama_host is None else ollama_host).strip()
    scheme, separator, hostport = raw.partition("://")
    default_port = str(DEFAULT_PORT)
    if not separator:
        scheme, hostport = "http", raw
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport, _, path = hostport.partition("/")
    host, port = hostport, default_port
    if hostport.startswith("["):  # [::1]:11434
        bracket_end = hostport.find("]")
        host = hostport[: bracket_end + 1]
        rest = hostport[bracket_end + 1 :]
        port = rest[1:] if rest.startswith(":") and rest[1:] else default_port
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
        port = port or default_port
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    suffix = f"/{path}" if path else ""
    return f"{scheme}://{host}:{port}{suffix}".rstrip("/")


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        raise TargetError(f"{url}: unreachable ({type(error).__name__}: {error})") from error


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise TargetError(f"{response.request.url}: answered with something other than JSON") from error


def list_models(base_url: str, transport: httpx.BaseTransport | None = None) -> list[dict[str, Any]]:
    """GET /api/tags: the models the server has (name, size in bytes, details)."""
    with httpx.Client(transport=transport, timeout=10.0, trust_env=False) as client:
        response = _request(client, "GET", f"{base_url}/api/tags")
        if response.status_code != 200:
            raise TargetError(f"{base_url}/api/tags: HTTP {response.status_code}")
        models = _json(response).get("models") or []
    return [m for m in models if isinstance(m, dict)]


def show_model(base_url: str, model: str, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """POST /api/show for one model; TargetError when the server is down or lacks the model."""
    with httpx.Client(transport=transport, timeout=10.0, trust_env=False) as client:
        response = _request(client, "POST", f"{base_url}/api/show", json={"model": model})
        if response.status_code == 404:
            raise TargetError(f"{base_url}: model {model!r} not found (pull it first: ollama pull {model})")
        if response.status_code != 200:
            message = response.text.strip().splitlines()[0] if response.text.strip() else ""
            raise TargetError(f"{base_url}/api/show {model}: HTTP {response.status_code} {message}".rstrip())
        shown = _json(response)
    if not isinstance(shown, dict) or not shown.get("model_info"):
        raise TargetError(f"{base_url}/api/show {model}: no model_info in the answer")
    return shown
