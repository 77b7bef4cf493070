"""The load stage: a cell's requests in flight.

`cell` (a cell's load settings and its driver), `schedules` (the arrival schedules), `dispatch`
(requests as tasks, records to the sink), `clock` (run-relative time, the event loop), `control`
(stop and abort_on), `health` (dispatch lag and client CPU: was the client the bottleneck?),
`workers` (a cell over N client processes on one clock).
"""
