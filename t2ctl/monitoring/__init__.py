"""Seeing the daemon work: structured logs, Prometheus metrics, health and status, systemd."""
