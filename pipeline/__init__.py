"""callsync: call-tracking events from Kafka into retailCRM."""
