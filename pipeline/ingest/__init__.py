"""The HTTP ingest: call events over HTTP onto the call topic, for producers without Kafka."""
