"""Settings for benchmark servers: the real settings plus bench-only endpoints."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
