"""Celery workers: the app, thin tasks over shared/, and the beat schedule."""
