"""Frames checked against the sockets' AsyncAPI document (docs/api/asyncapi.yaml).

`validate_frame` is what tests call; the root conftest.py calls it for every frame the
consumers send in a test. Test code only: jsonschema is a dev dependency.
"""

import copy
import functools
import json
from datetime import datetime

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from core.asyncapi import DOCUMENT

CHANNELS = ("delivery", "rider", "ops")
SIDES = ("server", "client")

# jsonschema checks "date-time" only with an optional package; the document's times are ISO
# 8601 with a UTC offset, which is what this checks.
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_time_with_offset(value) -> bool:
    if not isinstance(value, str):
        return True  # the "type" keyword judges non-strings
    return datetime.fromisoformat(value).tzinfo is not None


def validate_frame(channel: str, frame: dict, *, sent_by: str = "server") -> None:
    """Passes when `frame` is one of the messages the document lets `sent_by` ("server" or
    "client") send on `channel` ("delivery", "rider" or "ops"); raises AssertionError saying
    which messages were tried and what failed otherwise."""
    if channel not in CHANNELS or sent_by not in SIDES:
        raise ValueError(f"channel is one of {CHANNELS}, sent_by one of {SIDES}")
    candidates = allowed_messages(channel, sent_by)
    if not candidates:
        raise AssertionError(f"the {sent_by} may send nothing on {channel!r}; it sent {frame!r}")
    failures = []
    for name, validator in candidates.items():
        error = best_match(validator.iter_errors(frame))
        if error is None:
            return
        failures.append((name, validator.schema, error))
    # The messages whose `type` the frame names say most about what is wrong with it.
    named = [failure for failure in failures if _type_of(failure[1]) == _frame_type(frame)]
    lines = [
        f"  {name}: at {error.json_path}: {error.message}" for name, _, error in named or failures
    ]
    raise AssertionError(
        f"{sent_by} frame on {channel!r} matches no message of docs/api/asyncapi.yaml:\n"
        f"  frame: {json.dumps(frame, default=str)}\n"
        f"tried {', '.join(name for name, _, _ in failures)}"
        + (f"; of type {_frame_type(frame)!r}:" if named else ":")
        + "\n"
        + "\n".join(lines)
    )


@functools.cache
def allowed_messages(channel: str, sent_by: str) -> dict[str, jsonschema.Draft7Validator]:
    """The messages `sent_by` may send on `channel`, by their key in the channel, each as a
    validator of its payload. The document describes the server: its `send` operations and the
    replies to its `receive` operations are the server's frames, the rest the client's."""
    document = _document()
    resolve = functools.partial(_resolved, document)
    ours = "send" if sent_by == "server" else "receive"
    names = []
    for operation in document["operations"].values():
        if operation["channel"]["$ref"] != f"#/channels/{channel}":
            continue
        if operation["action"] == ours:
            refs = operation.get("messages", [])
        else:
            refs = operation.get("reply", {}).get("messages", [])
        names += [ref["$ref"].rsplit("/", 1)[-1] for ref in refs]
    messages = document["channels"][channel]["messages"]
    return {
        name: jsonschema.Draft7Validator(resolve(messages[name])["payload"], format_checker=FORMATS)
        for name in dict.fromkeys(names)
    }


def example_frame(channel: str, message: str, **fields) -> dict:
    """The document's example of `message` (its key in `channel`'s messages), with `fields`
    put in: a frame shaped as the code sends it, for a test to send through a group."""
    examples = _resolved(_document(), _document()["channels"][channel]["messages"][message])
    return {**copy.deepcopy(examples["examples"][0]["payload"]), **fields}


@functools.cache
def _document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text())


def _resolved(document: dict, node):
    """`node` with the document's local `$ref`s replaced by what they point to, deeply."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return _resolved(document, {**target, **siblings})
        return {key: _resolved(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(document, item) for item in node]
    return node


def _type_of(payload: dict):
    return payload.get("properties", {}).get("type", {}).get("const")


def _frame_type(frame):
    return frame.get("type") if isinstance(frame, dict) else None
