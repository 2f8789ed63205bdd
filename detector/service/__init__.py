"""`detector run`: the Kafka service (consumer loop, partitions, endpoints)."""
