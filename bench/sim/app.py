"""The Starlette application: routes of the native and OpenAI surfaces over one Simulator."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.sim import native, openai_api
from bench.sim.config import SimConfig
from bench.sim.state import Simulator


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "404 page not found"}, status_code=404)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "405 method not allowed"}, status_code=405)


def create_app(config: SimConfig) -> Starlette:
    """Build the ASGI app; `app.state.sim` holds the Simulator (tests may inspect it in-process)."""
    routes = [
        Route("/", native.root, methods=["GET", "HEAD"]),
        Route("/api/version", native.version, methods=["GET", "HEAD"]),
        Route("/api/tags", native.tags, methods=["GET", "HEAD"]),
        Route("/api/ps", native.ps, methods=["GET"]),
        Route("/api/show", native.show, methods=["POST"]),
        Route("/api/chat", native.chat, methods=["POST"]),
        Route("/api/generate", native.generate, methods=["POST"]),
        Route("/api/embed", native.embed, methods=["POST"]),
        Route("/api/embeddings", native.embeddings_legacy, methods=["POST"]),
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai_api.text_completions, methods=["POST"]),
        Route("/v1/embeddings", openai_api.embeddings, methods=["POST"]),
        Route("/v1/models", openai_api.list_models, methods=["GET"]),
        Route("/v1/models/{name:path}", openai_api.retrieve_model, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _method_not_allowed})
    app.state.sim = Simulator.create(config)
    return app
