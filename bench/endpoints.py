"""Where an Ollama server is: OLLAMA_HOST-style addresses (`host:port`, a URL, `[::1]:11434`) to
base URLs, the one parser for `bench run`, `bench kv`, scenario targets and `targets:` lists.

Follows Ollama's envconfig.Host(): scheme optional (http), without a port 11434, or 80/443 when
the scheme was written; a bad value is refused, never replaced by a default.
"""

from __future__ import annotations

import ipaddress
import os
import re

from bench.errors import UsageError
from bench.secrets import redact_address

DEFAULT_PORT = 11434

# The routes bench calls, in one place: Ollama's native API (server/routes.go) and the
# OpenAI-compatible surface (Ollama's middleware/openai.go; also llama-server's and others').
NATIVE_PATHS = {"chat": "/api/chat", "generate": "/api/generate", "embed": "/api/embed"}
OPENAI_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embed": "/v1/embeddings"}
VERSION_PATH = "/api/version"
SHOW_PATH = "/api/show"
PS_PATH = "/api/ps"
MODELS_PATH = "/v1/models"
_LISTEN_ALL = ("0.0.0.0", "[::]")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def base_url_of(raw: str) -> str:
    """A base URL from an OLLAMA_HOST-style value, parsed strictly; ValueError names the problem.

    Scheme optional (http); without a port: 11434, or 80/443 when the scheme was written (as
    Ollama's envconfig.Host()). Unlike Ollama, a bad port is refused rather than replaced by
    the default: a benchmark of the wrong server is worse than no benchmark.
    """
    raw = raw.strip().strip("\"'")
    default_port = "11434"
    if "://" in raw:
        scheme, hostport = raw.split("://", 1)
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme {scheme!r}: only http and https")
        default_port = {"http": "80", "https": "443"}[scheme]
    else:
        scheme, hostport = "http", raw
    hostport, _, url_path = hostport.partition("/")
    _refuse_credentials(hostport, url_path)
    host, port = "127.0.0.1", default_port
    if hostport.startswith("["):  # [::1]:11434
        bracket_end = hostport.find("]")
        if bracket_end < 0:
            raise ValueError("unclosed [ in an IPv6 address")
        host, rest = hostport[: bracket_end + 1], hostport[bracket_end + 1:]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host}: not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise ValueError("not a host[:port]")
            port = rest[1:]
    elif hostport.count(":") > 1:
        raise ValueError("more than one port (an IPv6 address goes in brackets: [::1]:11434)")
    elif ":" in hostport:
        host_part, port = hostport.split(":")
        host = host_part or "127.0.0.1"
    elif hostport:
        host = hostport
    if not host.startswith("[") and not _HOSTNAME_RE.match(host):
        raise ValueError(f"{host!r} is not a host name or address")
    if host in _LISTEN_ALL:
        # A listen address (`OLLAMA_HOST=0.0.0.0` as `ollama serve` reads it): the server is
        # reached through loopback, on every OS (0.0.0.0 as a destination works on Linux only).
        host = "127.0.0.1"
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r}: must be a number from 1 to 65535")
    base = f"{scheme}://{host}:{int(port)}"
    return f"{base}/{url_path}".rstrip("/") if url_path else base


def _refuse_credentials(hostport: str, url_path: str) -> None:
    """Credentials and tokens have one place, api_key_env: a URL carrying them is refused (and the
    caller prints the address through secrets.redact_address, never in clear)."""
    if "@" in hostport:
        raise ValueError("credentials in the URL are not sent: name an environment variable "
                         "holding the key in the scenario's api_key_env")
    if any(char in hostport + url_path for char in "?#") or any(char in hostport for char in " \t\\"):
        raise ValueError("not a host[:port] (no query or fragment: a key goes in api_key_env)")


def resolve_ollama_host(value: str | None = None) -> str:
    """The target's base URL from --target / the scenario (value), else OLLAMA_HOST; a bad one
    is a one-line UsageError naming where it came from."""
    where, raw = ("target", value) if value is not None else ("OLLAMA_HOST", os.environ.get("OLLAMA_HOST", ""))
    try:
        return base_url_of(raw)
    except ValueError as error:
        raise UsageError(f"{where} {redact_address(raw)!r}: {error}") from None
