"""Scheduling: the cron parser and periodic jobs, each tick enqueued once by any number of schedulers."""
