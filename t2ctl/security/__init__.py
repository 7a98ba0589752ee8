"""Credentials and secrets: API keys, encryption at rest, masking of personal data."""
