"""The producer API: queues, jobs, results, registries, dependencies, groups, and running a job in-process."""
