"""The Kafka side of the worker: commit points and leases, the hole filler, producing, tables."""
