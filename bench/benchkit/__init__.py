"""The orchestrator of the clusterq benchmark suite (runs in clusterq's interpreter)."""
