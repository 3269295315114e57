"""The state layer: every key name, one Lua script per transition, the stores that run them, the cross-slot outbox."""
