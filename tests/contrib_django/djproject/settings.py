"""Settings of the test project; the database comes from DJTEST_DB_* or DJTEST_SQLITE."""

import os

SECRET_KEY = "teguh-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "contrib_django.djproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

try:  # Django 6 ships django.tasks; older Django uses the django-tasks backport app
    import django.tasks  # noqa: F401

    TASK_APPS = []
except ImportError:
    TASK_APPS = ["django_tasks"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    *TASK_APPS,
    "teguh.contrib.django",
    "contrib_django.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJTEST_DB_NAME", "postgres"),
        "USER": os.environ.get("DJTEST_DB_USER", "postgres"),
        "HOST": os.environ.get("DJTEST_DB_HOST", ""),
        "PORT": os.environ.get("DJTEST_DB_PORT", ""),
    }
}

# A SQLite alias, as `startproject` makes: tests point TEGUH["DATABASE"] at it
# to see teguh refuse it. DJTEST_SQLITE (a file) makes it the default too.
DATABASES["lite"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("DJTEST_SQLITE", ":memory:"),
}
if os.environ.get("DJTEST_SQLITE"):
    DATABASES["default"] = DATABASES["lite"]

TEGUH = {
    "QUEUES": ["other"],
    "WORKER": {"concurrency": 2, "shutdown_timeout": 10, "log_format": "text"},  # log_format: CLI only
}

TASKS = {
    "default": {
        "BACKEND": "teguh.contrib.django.TeguhBackend",
        "OPTIONS": {"MAX_ATTEMPTS": 1},
    }
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
