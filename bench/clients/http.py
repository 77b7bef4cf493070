"""The one httpx.AsyncClient a run shares: pool sized to the concurrency, HTTP/1.1, keepalive."""

from __future__ import annotations

import httpx

from bench.errors import TargetError
from bench.secrets import auth_headers

# Idle keep-alive connections live this long. Closed-loop workers reuse a connection within
# microseconds; open-loop arrivals at low rates may idle for seconds, and a reconnect would add
# a TCP handshake to the next request's TTFT.
KEEPALIVE_EXPIRY_S = 60.0

# Extra pool slots beyond the requested concurrency: a connection the server closed while idle is
# replaced without waiting, and a load engine's few side requests (/api/ps, /api/version) never
# queue behind the benchmark's streams.
SPARE_CONNECTIONS = 8


TRANSPORTS = ("auto", "httpx", "fast")


def resolve_transport(transport: str, base_url: str) -> str:
    """"auto" is "fast" for http:// (timestamps from the kernel, no O(n^2) pool) and "httpx" for
    https:// (the fast transport speaks no TLS); an explicit choice is kept as given."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; one of {', '.join(TRANSPORTS)}")
    if transport != "auto":
        return transport
    return "fast" if httpx.URL(base_url).scheme == "http" else "httpx"


def make_http_client(
    base_url: str,
    api_key: str | None,
    max_connections: int,
    timeout_s: float = 300.0,
    transport: str = "auto",
) -> httpx.AsyncClient:
    """An AsyncClient for one target, able to hold `max_connections` streams at once.

    - No hidden cap: both max_connections and max_keepalive_connections are sized to the
      concurrency (httpx's defaults, 100 and 20, would queue requests inside the client and
      report client-side waiting as server TTFT).
    - HTTP/1.1 only: Ollama speaks HTTP/1.1; one stream per connection.
    - Reads: httpcore reads up to 64 KiB per socket read and hands each read to us whole
      (bench iterates raw chunks, never a fixed small chunk size), so a long prompt's response
      or a fast token stream is never throttled by a small client buffer.
    - `Authorization: Bearer <key>` when a key is given (Ollama ignores it; OpenAI-style gateways
      in front of Ollama require one).
    - timeout_s is the per-read / connect / pool default; each request passes its own
      RequestSpec.timeout_s as well.
    - transport "httpx" is httpx's own (httpcore); "fast" is bench.clients.transport's
      FastTransport (httptools parser, O(1) pool, reads stamped on arrival): several times the
      requests/s and a fraction of the CPU per token (`bench perf`). It speaks plain http://
      only; an https:// target with "fast" raises TargetError rather than quietly measuring
      with another client than the one asked for. "auto" (the default) picks "fast" for
      http:// and "httpx" for https://.
    """
    transport = resolve_transport(transport, base_url)
    pool_size = max(1, int(max_connections)) + SPARE_CONNECTIONS
    headers = {"User-Agent": "bench", **auth_headers(api_key)}
    fast_transport = None
    if transport == "fast":
        if httpx.URL(base_url).scheme != "http":
            raise TargetError(f"--transport fast speaks plain http:// only, not {base_url}; "
                              "use --transport httpx for this target")
        from bench.clients.transport import FastTransport

        fast_transport = FastTransport(pool_size)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        transport=fast_transport,  # None: httpx's own, built from the limits below
        http1=True,
        http2=False,
        limits=httpx.Limits(
            max_connections=pool_size,
            max_keepalive_connections=pool_size,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        ),
        timeout=httpx.Timeout(timeout_s),
        # Proxies from the environment (HTTP_PROXY) would silently route benchmark traffic
        # through another hop; a benchmark talks to the target directly.
        trust_env=False,
        follow_redirects=False,
    )
