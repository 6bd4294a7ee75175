"""Events for other services: committed changes published to NATS JetStream and Redis Streams."""
