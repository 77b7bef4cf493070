"""The real Ollama: the pinned release, building it (`bench ollama build`), and running it as a target."""
