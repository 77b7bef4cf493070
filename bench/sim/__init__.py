"""bench sim: a protocol-faithful simulated Ollama server (native + OpenAI APIs).

A package of its own: it imports nothing from bench outside bench/sim, so the client side that
measures it can never share a bug with it. Entry points: `bench.sim.server.serve` (the CLI) and
`bench.sim.testing.running_sim` (tests).
"""
