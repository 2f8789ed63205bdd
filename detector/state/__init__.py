"""Changelog state: records, checkpoints and restore."""
