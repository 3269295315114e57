"""Connections: a URL or a redis-py client -> a client for standalone, Sentinel or Cluster (sync and asyncio)."""
