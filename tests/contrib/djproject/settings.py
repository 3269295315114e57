"""The Django project of the integration tests: a real PostgreSQL database (127.0.0.1:5432, user
postgres) and the Redis URL of $CLUSTERQ_URL (the tests set CLUSTERQ per test)."""

import os

SECRET_KEY = "clusterq-contrib-tests-secret-key-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "clusterq.contrib.django",  # before the admin: its template adds the dashboard link to the admin index
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "djproject.shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "djproject.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth",
                                       "django.contrib.messages.context_processors.messages"]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    # pytest-django creates (and drops) test_<NAME>: one per process, so concurrent runs never share one
    "NAME": os.environ.get("CLUSTERQ_TEST_PGDATABASE", f"clusterq_contrib_{os.getpid()}"),
    "USER": os.environ.get("PGUSER", "postgres"),
    "HOST": os.environ.get("PGHOST", "127.0.0.1"),
    "PORT": os.environ.get("PGPORT", "5432"),
}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CLUSTERQ = {"URL": os.environ.get("CLUSTERQ_URL", "redis://127.0.0.1:6399/0"), "QUEUES": ["default"]}
TASKS = {"default": {"BACKEND": "clusterq.contrib.django.ClusterQBackend", "QUEUES": []}}
