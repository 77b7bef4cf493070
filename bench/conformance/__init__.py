"""`bench conformance`: the same probes against `bench sim` and a real Ollama, and every difference.

checks.py (one observed field and how to compare it), session.py (what a probe may do to a
server), probes_*.py (the probes), targets.py (starting each side), known.py (the known
deviations file), compare.py (observations → rows with verdicts), table.py (the terminal table).
"""
