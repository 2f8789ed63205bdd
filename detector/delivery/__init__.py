"""Delivery of incident events to alert receivers: Alertmanager, PagerDuty, signed webhooks."""
