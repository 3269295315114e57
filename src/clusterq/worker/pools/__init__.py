"""Execution pools: process (default), fork, thread, asyncio and solo."""
