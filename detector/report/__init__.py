"""`detector replay --report`: record what a replay judged, and write it as one HTML page."""
