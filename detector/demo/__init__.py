"""`detector demo`: synthetic telemetry, the embedded broker and the real service, with a live view."""
