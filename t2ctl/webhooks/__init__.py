"""Webhooks to partners: the outbox (``outbox``), Standard Webhooks signing (``signing``),
the SSRF guard (``guard``), sending and retrying (``delivery``), and what operators read and
resend (``deliveries``)."""
