"""detector: streaming anomaly detection for AI integrations."""
__version__ = "0.1.0"
