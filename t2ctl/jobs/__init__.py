"""The durable job engine: jobs are rows, so nothing that must survive a crash lives in memory.

``queue`` holds every query that moves a job; ``tasks`` names handlers and their retry policy;
``worker`` claims and runs jobs on threads; ``scheduler`` turns the clock into jobs, one per
tick across every daemon. The engine knows task names, never orders or Zoho: domain modules
register their handlers.
"""
