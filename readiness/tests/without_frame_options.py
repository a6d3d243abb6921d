"""The project's settings with one defect: no X-Frame-Options header on any answer.

readiness/tests/test_readiness.py serves the app with these (DJANGO_SETTINGS_MODULE) to see the
readiness report name the clickjacking lines of a server that forgot the header.
"""

from config.settings import *  # noqa: F403
from config.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if not name.endswith(".XFrameOptionsMiddleware")]
