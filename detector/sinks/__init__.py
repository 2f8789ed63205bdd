"""Where the service writes: Kafka producers for incidents, dead letters, containment, changelog."""
