"""Integrations with web frameworks (Flask, Django). Each module imports its framework lazily."""
