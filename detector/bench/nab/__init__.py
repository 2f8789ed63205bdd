"""NAB benchmark: scorer and runner."""
