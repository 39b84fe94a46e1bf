#!/usr/bin/env python
"""manage.py of the test project (run with tests/ on sys.path)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contrib_django.djproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
