"""The real engine: llama.cpp's llama-server, run the way Ollama v0.33 runs it, and the GGUF maker.

Server side (like bench/sim): nothing here imports the client side. Modules: `tokenizer` and
`gguf_maker`/`shapes` (bench gguf make), `binary` (finding llama-server), `launch` (its argv),
`process` (one child process), `completion` (/completion and the timings mapping), `memory_log`
(buffer lines → /api/ps sizes), `models` (model names → GGUF files).
"""
