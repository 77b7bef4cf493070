"""`bench perf`: how fast and how accurate bench's own client is (issue 8).

A lean emitter (bench.sim.emitter) runs in a subprocess pinned to one CPU; bench's real client
path (bench.load closed loop → bench.clients.send over make_http_client, records written as
`bench run` writes them) runs here, pinned to another CPU, and is measured: throughput, CPU per
request and token, memory per held stream, the most concurrent streams, and timing accuracy
against the emitter's logged emit times.
"""
