"""``path("jobs/", include("clusterq.contrib.django.urls"))``: the dashboard under ``/jobs/``."""

from django.urls import re_path

from clusterq.contrib.django.dashboard import dashboard_view

urlpatterns = [re_path(r"^(?P<path>.*)$", dashboard_view, name="clusterq-dashboard")]
