"""The WSGI entry point: `gunicorn web.wsgi:app`."""

import os

from shared.settings import Settings
from web.app import create_app

app = create_app(Settings.from_env(os.environ))
