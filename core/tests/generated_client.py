"""A Python client generated from the live OpenAPI schema with openapi-python-client, as the app
teams generate theirs, and a check that a parsed answer really has the types the schema gave it.

The generator's models do not check what they are given: a `str` field takes an int, a missing
optional field stays UNSET and an undocumented one lands in `additional_properties`. So every
parsed model is walked here against its own type annotations.
"""

import datetime
import enum
import importlib
import json
import subprocess
import sys
import types
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path

import attrs

from devstack.env import VENV_BIN

GENERATOR = VENV_BIN / "openapi-python-client"
PACKAGE = "delivery_api_client"
# What 0.29 prints on stderr before its list of problems (cli.handle_errors), then one header
# per problem ("Unable to parse this part of your OpenAPI document: ", "Problem creating a
# Property: ", ...).
PROBLEM_BANNERS = (
    "Warning(s) encountered while generating",
    "Error(s) encountered while generating",
)


@dataclass
class Generated:
    package: types.ModuleType
    schema: dict  # the document it was generated from
    output: str


def generate(schema: Path, work_dir: Path) -> Generated:
    """Runs the generator on `schema` (a JSON file) and imports the package it wrote.

    Fails on a non-zero exit (--fail-on-warning makes any warning one), on a problem banner, and
    on anything else on stderr: a clean run prints only "Generating <dir>". The post hooks (ruff)
    are off, so their absence or their opinions cannot make a warning of their own.
    """
    config = work_dir / "generator.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    output_dir = work_dir / "client"
    output_dir.mkdir()
    run = subprocess.run(
        [
            *(str(GENERATOR), "generate", "--path", str(schema), "--meta", "none"),
            *("--output-path", str(output_dir / PACKAGE), "--config", str(config)),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200", "LANG": "C.UTF-8"},
    )
    output = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}--- stderr ---\n{run.stderr}"
    banners = [banner for banner in PROBLEM_BANNERS if banner in run.stderr + run.stdout]
    assert not banners, f"the generator found problems in the schema:\n{output}"
    assert run.returncode == 0, f"the generator failed:\n{output}"
    assert not run.stderr.strip(), f"the generator printed on stderr:\n{output}"
    assert run.stdout.strip() == f"Generating {output_dir / PACKAGE}", output
    return Generated(import_package(output_dir), json.loads(schema.read_text()), output)


def import_package(directory: Path) -> types.ModuleType:
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(directory))


def forget_package() -> None:
    """Drops the generated modules, so the next test imports its own client."""
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def answers_without_a_schema(schema: dict) -> list[str]:
    """Every operation's success answer that has a body but no schema for it, for which the
    generator writes `Response[Any]` with `parsed` None."""
    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation.get("responses", {}).items():
                if not status.startswith("2") or status == "204":
                    continue
                body = answer.get("content", {}).get("application/json", {})
                if "schema" not in body:
                    missing.append(
                        f"{operation.get('operationId')} ({method.upper()} {path}): "
                        f"the {status} answer has no JSON schema"
                    )
    return missing


def parsed(response, model: type):
    """The response's parsed model, which must be an instance of `model` that matches the
    schema's types all the way down."""
    body = response.content.decode(errors="replace")
    assert isinstance(response.parsed, model), (
        f"{response.status_code}: expected a {model.__name__}, got "
        f"{type(response.parsed).__name__}: {body}"
    )
    problems = conformance_problems(response.parsed)
    assert not problems, f"{model.__name__} does not match the schema: {problems}\n{body}"
    return response.parsed


def conformance_problems(model) -> list[str]:
    problems: list[str] = []
    _check_model(model, type(model).__name__, problems)
    return problems


def _check_model(model, path: str, problems: list[str]) -> None:
    cls = type(model)
    module = sys.modules[cls.__module__]
    package = sys.modules[cls.__module__.rsplit(".", 2)[0] + ".models"]
    hints = typing.get_type_hints(cls, globalns={**vars(package), **vars(module)})
    for field in attrs.fields(cls):
        value = getattr(model, field.name)
        if field.name == "additional_properties":
            if value:
                problems.append(f"{path}: fields the schema does not declare: {sorted(value)}")
            continue
        _check_value(value, hints[field.name], f"{path}.{field.name}", problems)


def _check_value(value, hint, path: str, problems: list[str]) -> None:
    if not _fits(value, hint, path, problems):
        problems.append(f"{path}: {value!r} is not {hint}")


def _fits(value, hint, path: str, problems: list[str]) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(hint)
        for arm in arms:
            arm_problems: list[str] = []
            if _fits(value, arm, path, arm_problems) and not arm_problems:
                return True
        return False
    if hint is type(None):
        return value is None
    if origin is list:
        if not isinstance(value, list):
            return False
        (item,) = typing.get_args(hint)
        for index, element in enumerate(value):
            _check_value(element, item, f"{path}[{index}]", problems)
        return True
    if origin is dict:
        return isinstance(value, dict)
    if attrs.has(hint):
        if not isinstance(value, hint):
            return False
        _check_model(value, path, problems)
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is datetime.datetime:
        return isinstance(value, datetime.datetime) and value.tzinfo is not None
    if hint in (str, bool, uuid.UUID, datetime.date) or (
        isinstance(hint, type) and issubclass(hint, enum.Enum)
    ):
        return isinstance(value, hint)
    if isinstance(hint, type):  # the generated Unset, File
        return isinstance(value, hint)
    raise AssertionError(f"{path}: no check for the annotation {hint!r}")
