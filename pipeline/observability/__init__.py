"""Observability: the Prometheus metrics, the consumer lag gauges, the logging set-up."""
