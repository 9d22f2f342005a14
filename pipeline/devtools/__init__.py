"""Dev tools: the retailCRM double, a local broker, the demo, bench and fault suite; not shipped."""
