#!/usr/bin/env bash
# Fetch Apache Kafka (pinned in pom.xml) from Maven Central and run one KRaft node on 127.0.0.1.
# Usage: deploy/kafka/broker.sh [--port 9092] [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python -m pipeline kafka-broker "$@"
