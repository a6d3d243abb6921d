from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self):
        from django.core.signals import request_finished

        # Bind @shared_task to our Celery app (broker, routes) in every process, web included.
        import config.celery  # noqa: F401
        from core.geos_threads import release_geos_thread_state

        request_finished.connect(release_geos_thread_state, dispatch_uid="release_geos")
