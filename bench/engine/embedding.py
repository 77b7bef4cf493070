"""One /api/embed input the way Ollama v0.33 embeds it with llama-server (EmbedHandler, routes.go
795-1030; llamaServerRunner.Embedding, llm/llama_server.go 2338-2479).

Per input: `/tokenize` (no specials) to check it against the context, `/detokenize` the first
`limit` tokens when it is too long and truncation is on (a 400 when it is off), then
`/v1/embeddings` with `{"input": text}` (plus `embd_normalize: -1` for GGUFs whose legacy
embeddings were raw). A 400 from llama-server is retried once with the input cut to num_batch.
The vector comes back as llama-server sent it; Ollama's front normalises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine.process import EngineHTTPError, LlamaServer
from bench.sim.backend import RunnerRequestError

TOO_LONG = "the input length exceeds the context length"
_LIMIT_MARKERS = ("too large", "context size", "context length", "physical batch size", "exceeds the available context")


@dataclass(frozen=True, slots=True)
class EmbeddingMetadata:
    """What EmbedHandler reads from the GGUF's key-values."""

    bos_token_id: int | None
    eos_token_id: int | None
    raw_embeddings: bool  # legacyEmbeddingsWereRaw: send embd_normalize -1


def _field_value(reader: Any, key: str, default: Any) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_embedding_metadata(path: Path) -> EmbeddingMetadata:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    arch = str(_field_value(reader, "general.architecture", ""))
    bos, eos = _field_value(reader, "tokenizer.ggml.bos_token_id", None), _field_value(reader, "tokenizer.ggml.eos_token_id", None)
    return EmbeddingMetadata(
        bos_token_id=None if bos is None else int(bos), eos_token_id=None if eos is None else int(eos),
        raw_embeddings=legacy_embeddings_were_raw(reader, arch),
    )


def legacy_embeddings_were_raw(reader: Any, arch: str) -> bool:
    """Ollama's legacyEmbeddingsWereRaw: only some bert and nomic-bert embedding GGUFs.

    Ollama's KV getters prefix keys that are not tokenizer./general. with the architecture, so
    `normalize_embeddings` is `{arch}.normalize_embeddings`.
    """
    if f"{arch}.pooling_type" not in reader.fields:
        return False
    if arch == "bert":
        if str(_field_value(reader, "tokenizer.ggml.model", "bert")) != "bert":
            return True
        return not bool(_field_value(reader, f"{arch}.normalize_embeddings", True))
    if arch in ("nomic-bert", "nomic-bert-moe"):
        return not bool(_field_value(reader, f"{arch}.normalize_embeddings", False))
    return False


def token_limit(tokens: list[int], limit: int, metadata: EmbeddingMetadata) -> int:
    """adjustTokenLimit: room for the BOS and EOS llama-server adds when the text lacks them.

    Ollama reads `add_bos_token`/`add_eos_token` as `{arch}.add_*_token`, which GGUFs do not carry,
    so both default to true.
    """
    if tokens and tokens[0] != metadata.bos_token_id:
        limit -= 1
    if tokens and tokens[-1] != metadata.eos_token_id:
        limit -= 1
    return limit


@dataclass(frozen=True, slots=True)
class Embedded:
    vector: list[float]
    prompt_tokens: int


async def embed_one(
    server: LlamaServer, text: str, num_ctx: int, num_batch: int, truncate: bool, metadata: EmbeddingMetadata
) -> Embedded:
    """embedWithRetry for one input; RunnerRequestError for what Ollama answers with a status."""
    tokens = await server.tokenize(text, add_special=False)
    limit = token_limit(tokens, num_ctx, metadata)
    if limit <= 0:
        raise ValueError("input after truncation exceeds maximum context length")
    if len(tokens) > limit:
        if not truncate:
            raise RunnerRequestError(400, TOO_LONG)
        text = await server.detokenize(tokens[:limit])
    try:
        return await _embedding(server, text, metadata)
    except RunnerRequestError as error:
        if error.status != 400 or not truncate:
            raise
    # llama-server refused the input (a batch smaller than the context): cut to num_batch, once.
    tokens = await server.tokenize(text, add_special=False)
    limit = min(token_limit(tokens, num_ctx, metadata), token_limit(tokens, num_batch, metadata))
    if limit <= 0:
        raise ValueError("input after truncation exceeds maximum context length")
    if len(tokens) <= limit:
        raise ValueError("input exceeds maximum context length and cannot be truncated further")
    return await _embedding(server, await server.detokenize(tokens[:limit]), metadata)


async def _embedding(server: LlamaServer, text: str, metadata: EmbeddingMetadata) -> Embedded:
    body: dict[str, Any] = {"input": text}
    if metadata.raw_embeddings:
        body["embd_normalize"] = -1
    try:
        answer = await server.post_json("/v1/embeddings", body)
    except EngineHTTPError as error:
        raise RunnerRequestError(*normalized_error(error.status, error.message)) from None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not data:
        raise ValueError("empty embedding response")
    usage = answer.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or data[0].get("tokens_evaluated") or 0)
    return Embedded([float(v) for v in data[0]["embedding"]], prompt_tokens)


def normalized_error(status: int, message: str) -> tuple[int, str]:
    """normalizeEmbeddingError: llama-server's context/batch complaints become Ollama's 400 text."""
    if any(marker in message.lower() for marker in _LIMIT_MARKERS):
        return 400, TOO_LONG
    return status, message
