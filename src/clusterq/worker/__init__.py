"""The worker: a supervisor that leases jobs, runs them in a pool, reports outcomes and keeps queues healthy."""
