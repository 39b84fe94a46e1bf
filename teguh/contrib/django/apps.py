"""The Django app config: autodiscovery of `tasks.py`, schema upgrades on `migrate`, system checks."""

from __future__ import annotations

import logging

from django.apps import AppConfig
from django.db.models.signals import post_migrate

logger = logging.getLogger("teguh.django")


class TeguhConfig(AppConfig):
    """`teguh.contrib.django`, labelled `teguh`."""

    name = "teguh.contrib.django"
    label = "teguh"
    verbose_name = "teguh"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Create the project's app and import every installed app's `tasks.py`.

        Discovery happens here rather than when a worker starts, so web
        processes (which spawn) and workers (which run) see the same
        registered tasks and their spawn defaults.
        """
        from django.core import checks
        from django.utils.module_loading import autodiscover_modules

        from . import conf
        from ._app import get_app
        from .checks import check_database
        from .schema import sync_after_migrate

        checks.register(check_database, "teguh")  # reads settings only: runs on `check` too
        get_app()
        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="teguh.sync_after_migrate")
        if conf.setting("AUTODISCOVER"):
            autodiscover_modules("tasks")
            logger.debug("teguh tasks registered: %s", ", ".join(sorted(get_app().tasks)))
