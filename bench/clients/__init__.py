"""One module per HTTP surface; each turns one RequestSpec into one RequestRecord.

Clients know nothing of concurrency or schedules: bench.load drives them.
"""
