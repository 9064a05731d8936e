"""Domain logic shared by the web receiver and the Celery workers (no Flask, no Celery workers)."""
