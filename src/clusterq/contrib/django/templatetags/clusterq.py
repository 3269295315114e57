"""``{% clusterq_dashboard_url %}``: where the dashboard is mounted, or "" when the project's URLs do not
include it (so the admin's link is simply left out)."""

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()


@register.simple_tag
def clusterq_dashboard_url() -> str:
    try:
        return reverse("clusterq-dashboard", kwargs={"path": ""})
    except NoReverseMatch:
        return ""
