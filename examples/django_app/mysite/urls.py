from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("jobs/", include("clusterq.contrib.django.urls")),  # the dashboard, for staff users
    path("orders/", views.order),
    path("sum/", views.add_numbers),
    path("orders/<int:pk>/", views.order_status),
    path("tasks/<path:result_id>", views.task_status),
]
