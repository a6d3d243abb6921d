"""Checks of this project's image (phases 2 and 10), run only inside it."""

import os
import re
from pathlib import Path

from django.conf import settings

from readiness.registry import NotHere, Outcome, check, failed, judged, passed
from readiness.runner import Context


def _container_marker() -> str | None:
    for marker in ("/.dockerenv", "/run/.containerenv"):
        if Path(marker).exists():
            return marker
    try:
        cgroups = Path("/proc/1/cgroup").read_text()
    except OSError:
        return None
    found = re.search(r"docker|kubepods|containerd|libpod", cgroups)
    return f"/proc/1/cgroup ({found[0]})" if found else None


def _in_this_image() -> None:
    """Raises NotHere unless this runs in the project's image (its Dockerfile sets APP_DIR)."""
    marker = _container_marker()
    app_dir = os.environ.get("APP_DIR", "")
    if marker is None:
        raise NotHere("not in a container: the image's user and directories do not apply")
    if not app_dir or Path(app_dir).resolve() != Path(settings.BASE_DIR).resolve():
        raise NotHere(
            f"in a container ({marker}) that is not this project's image (APP_DIR, set by its "
            "Dockerfile, does not name this code's directory)"
        )


@check("P2.6", "P10.15")
def image_user(context: Context) -> Outcome:
    import pwd

    _in_this_image()
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "no passwd entry"
    if uid == 0:
        return failed("the service runs as root (uid 0)")
    return passed(f"runs as uid {uid} ({name}), not root")


@check("P2.7")
def image_writable_directories(context: Context) -> Outcome:
    _in_this_image()
    problems = []
    for name in ("STATIC_ROOT", "MEDIA_ROOT"):
        path = Path(getattr(settings, name))
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{name} {path} is not a directory this user can write")
    return judged(problems, f"STATIC_ROOT and MEDIA_ROOT writable by uid {os.getuid()}")


@check("P2.8")
def image_static_directory(context: Context) -> Outcome:
    _in_this_image()
    root = Path(settings.STATIC_ROOT)
    if not root.is_dir() or not any(root.iterdir()):
        return failed(f"STATIC_ROOT {root} is missing or empty")
    return passed(f"STATIC_ROOT {root} holds the collected files")


@check("P2.9")
def image_entrypoint(context: Context) -> Outcome:
    _in_this_image()
    entrypoint = Path(settings.BASE_DIR) / "entrypoint.sh"
    if not os.access(entrypoint, os.X_OK):
        return failed(f"{entrypoint} is missing or not executable")
    return passed(f"{entrypoint} is executable")
