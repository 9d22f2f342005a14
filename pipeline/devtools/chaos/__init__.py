"""callsync's fault suite: worker processes, a real broker and the retailCRM double under faults.

Each scenario (`scenarios.py`) publishes sample calls of many tenants, does its harm (SIGKILLed
workers, rebalances, a stopped broker, a portal down or hostile, a revoked key and its replay,
late answers, hostile records), waits for the run to converge and compares every portal's CRM
state with a golden computed from the input alone (`golden.py`): lost, duplicated, misattributed
and extra objects per kind, requests to a dead key, time to converge after the fault, worker
exits, Faust agent crashes and whether the commit points reached the end of the call topic.

`python -m pipeline chaos [SCENARIO ...]` runs the long form: 3000 calls over 10 tenants per
scenario, 10 000 hostile records, 60 s fault windows. Measured on the 2-core dev machine: two
to three minutes a scenario that holds (broker 2 min each, portal outages 2.5 min each,
late-task up to 6 min), all ten together about 30-40 minutes; a scenario that fails can take
longer, since it waits up to `settle_within` (15 min) for a convergence that does not come.
`tests/integration/test_chaos.py` runs the short form (300 calls, 1000 hostile records, 12 s
windows): about 6 minutes for all of it.
"""
