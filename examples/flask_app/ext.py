from clusterq.contrib.flask import ClusterQ

cq = ClusterQ()
