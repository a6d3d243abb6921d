from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self):
        # Bind @shared_task to our Celery app (broker, routes) in every process, web included.
        import config.celery  # noqa: F401
