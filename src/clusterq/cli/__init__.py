"""The command line (`clusterq ...`)."""
