"""detector: streaming anomaly detection for AI integrations."""
from detector import compiled as _compiled

_compiled.install()  # before any compiled module is imported: their sources run when the build is stale

__version__ = "0.1.0"
