"""Operator tools: what applies to a route and why (`detector config explain`)."""
