"""Read-only questions to a running Ollama server: its models (/api/tags) and a model's /api/show
(the one place bench asks /api/show: `bench run` checks its models here, `bench kv` reads shapes).

Used by `bench kv` (and anything else that needs a model's architecture). Errors a user can cause
(server down, model missing) become one-line TargetErrors.
"""

from __future__ import annotations

from typing import Any

import httpx

from bench.endpoints import SHOW_PATH
from bench.errors import TargetError
from bench.secrets import auth_headers
from bench.inputs.server_json import ServerJSONError, object_field, server_object



def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.ConnectError:
        raise TargetError(f"{url}: unreachable (connection refused): is the server running?") from None
    except httpx.HTTPError as error:
        raise TargetError(f"{url}: unreachable ({type(error).__name__}: {error})") from error


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        return server_object(response.content, str(response.request.url))
    except ServerJSONError as error:
        raise TargetError(str(error)) from None


def list_models(base_url: str, transport: httpx.BaseTransport | None = None) -> list[dict[str, Any]]:
    """GET /api/tags: the models the server has (name, size in bytes, details)."""
    with httpx.Client(transport=transport, timeout=10.0, trust_env=False) as client:
        response = _request(client, "GET", f"{base_url}/api/tags")
        if response.status_code != 200:
            raise TargetError(f"{base_url}/api/tags: HTTP {response.status_code}")
        models = _json(response).get("models") or []
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def show_model(base_url: str, model: str, transport: httpx.BaseTransport | None = None, *,
               api_key: str | None = None, need_model_info: bool = True, timeout_s: float = 10.0) -> dict[str, Any]:
    """POST /api/show for one model; TargetError when the server is down or lacks the model (or,
    with `need_model_info`, answers without the architecture bench kv reads)."""
    with httpx.Client(transport=transport, timeout=timeout_s, trust_env=False,
                      headers=auth_headers(api_key)) as client:
        response = _request(client, "POST", f"{base_url}{SHOW_PATH}", json={"model": model})
        if response.status_code == 404:
            raise TargetError(f'model "{model}" not found on {base_url}: try "ollama pull {model}"')
        if response.status_code != 200:
            message = response.text.strip().splitlines()[0] if response.text.strip() else ""
            raise TargetError(f"{base_url}/api/show {model}: HTTP {response.status_code} {message}".rstrip())
        shown = _json(response)
    where = f"{base_url}/api/show {model}"
    try:
        # Typed here, once: every reader after this (bench kv's shapes, the manifest) trusts them.
        for key in ("model_info", "details", "capabilities"):
            if key == "capabilities":
                if not isinstance(shown.get(key) or [], list):
                    raise ServerJSONError(f"{where}: capabilities is a {type(shown[key]).__name__}, not a list")
            else:
                object_field(shown, key, where)
    except ServerJSONError as error:
        raise TargetError(str(error)) from None
    if need_model_info and not shown.get("model_info"):
        raise TargetError(f"{where}: no model_info in the answer")
    return shown
