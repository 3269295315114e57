"""clusterq: background jobs for Python on Redis and Valkey: standalone, Sentinel or Cluster."""
