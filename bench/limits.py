"""Upper bounds on every number a scenario or flag gives (no imports: the CLI reads them at start).

Far beyond any real benchmark, well inside the 64-bit range NumPy, Arrow and Ollama use: a value
past them is a typo, not a study.
"""

MAX_COUNT = 10_000_000  # requests, tokens, warmup requests
MAX_CONCURRENCY = 10_000  # workers are real coroutines: two million of them exhaust memory
MAX_SECONDS = 7 * 24 * 3600.0  # durations, timeouts, gaps: a week
MAX_RATE_RPS = 1_000_000.0
# Cells of one scenario (the matrix's product, sweep steps included): counted before expanding,
# so three 1000-value lists are refused at once instead of building 10^9 cells.
MAX_CELLS = 10_000
# Cells one report draws (all its runs together): the page plots every cell, ~46 ms of CPU each
# (2,000 cells: 92 s CPU, 4.6 min wall on a busy 2-core box); summary.csv holds any number.
MAX_REPORT_CELLS = 1_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Aliases may share YAML nodes; a scenario expanding past this many is an alias bomb.
MAX_YAML_NODES = 100_000
