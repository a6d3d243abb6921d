"""The sockets' AsyncAPI document (docs/api/asyncapi.yaml), served as it is and as a page.

Plain Django views, not DRF ones: they stay out of the OpenAPI schema. The page is rendered on
the server from the same document, without JavaScript or anything from a CDN.
"""

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views import View

DOCUMENT = Path(settings.BASE_DIR) / "docs" / "api" / "asyncapi.yaml"


def asyncapi_document() -> dict:
    """The document, parsed; read again only when the file changes."""
    stat = DOCUMENT.stat()
    return _parsed(stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _parsed(mtime_ns: int, size: int) -> dict:
    return yaml.safe_load(DOCUMENT.read_text())


class AsyncApiSchemaView(View):
    """GET /api/schema/sockets/: the YAML file as it is, or JSON for `?format=json` or an
    Accept header that asks for JSON and not YAML."""

    def get(self, request):
        if _wants_json(request):
            return JsonResponse(asyncapi_document(), json_dumps_params={"indent": 2})
        response = HttpResponse(DOCUMENT.read_bytes(), content_type="application/yaml")
        response["Content-Disposition"] = 'inline; filename="asyncapi.yaml"'
        return response


def _wants_json(request) -> bool:
    asked = request.GET.get("format")
    if asked is not None:
        return asked == "json"
    accept = request.headers.get("Accept", "")
    return "json" in accept and "yaml" not in accept


class AsyncApiDocsView(View):
    """GET /api/docs/sockets/: the document as a page for app developers."""

    def get(self, request):
        return render(request, "core/asyncapi.html", page_context(asyncapi_document()))


@dataclass
class Field:
    name: str
    kind: str
    required: bool
    text: str
    depth: int


@dataclass
class Message:
    anchor: str
    name: str
    title: str
    summary: str
    description: str
    fields: list[Field]
    closed: bool  # no fields beyond those listed
    example: str


@dataclass
class Channel:
    key: str
    address: str
    title: str
    description: str
    parameters: list[tuple[str, str]]
    server_sends: list[Message] = field(default_factory=list)
    app_sends: list[Message] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)

    @property
    def sides(self) -> list[tuple[str, list[Message]]]:
        return [("The server sends", self.server_sends), ("The app sends", self.app_sends)]


def page_context(document: dict) -> dict:
    """What the page shows, its prose already HTML."""
    resolve = _resolver(document)
    close_codes = [
        {**code, "meaning": inline(code["meaning"]), "client": inline(code["client"])}
        for code in document.get("x-close-codes", [])
    ]
    channels = []
    for key, channel in document["channels"].items():
        page = Channel(
            key=key,
            address=channel["address"],
            title=channel.get("title", key),
            description=prose(channel.get("description", "")),
            parameters=[
                (name, inline(parameter.get("description", "")))
                for name, parameter in channel.get("parameters", {}).items()
            ],
            close_codes=[code["code"] for code in close_codes if key in code["channels"]],
        )
        by_side = _messages_by_side(document, key)
        for side, names in by_side.items():
            messages = [
                _message(f"{key}-{name}", resolve(channel["messages"][name])) for name in names
            ]
            setattr(page, side, messages)
        channels.append(page)
    schemes = document.get("components", {}).get("securitySchemes", {})
    return {
        "title": document["info"]["title"],
        "version": document["info"]["version"],
        "asyncapi": document["asyncapi"],
        "introduction": prose(document["info"].get("description", "")),
        "servers": [
            (name, f"{server['protocol']}://{server['host']}", inline(server.get("description")))
            for name, server in document.get("servers", {}).items()
        ],
        "security": [
            (name, scheme["in"], scheme["name"], prose(scheme.get("description", "")))
            for name, scheme in schemes.items()
        ],
        "channels": channels,
        "close_codes": close_codes,
    }


def _messages_by_side(document: dict, channel_key: str) -> dict[str, list[str]]:
    """The channel's message keys the server sends and those the app sends, in the order the
    operations name them (a reply goes the other way from the operation it answers)."""
    sides: dict[str, list[str]] = {"server_sends": [], "app_sends": []}
    operations = [
        operation
        for operation in document.get("operations", {}).values()
        if operation["channel"]["$ref"] == f"#/channels/{channel_key}"
    ]
    # The server's own frames first, then the app's (and the server's replies to them).
    for operation in sorted(operations, key=lambda operation: operation["action"] != "send"):
        forward, back = (
            ("server_sends", "app_sends")
            if operation["action"] == "send"
            else ("app_sends", "server_sends")
        )
        for side, refs in (
            (forward, operation.get("messages", [])),
            (back, operation.get("reply", {}).get("messages", [])),
        ):
            for ref in refs:
                name = ref["$ref"].rsplit("/", 1)[-1]
                if name not in sides[side]:
                    sides[side].append(name)
    return sides


def _message(anchor: str, message: dict) -> Message:
    examples = message.get("examples") or []
    example = json.dumps(examples[0]["payload"], indent=2) if examples else ""
    return Message(
        anchor=anchor,
        name=message.get("name", ""),
        title=message.get("title", ""),
        summary=inline(message.get("summary", "")),
        description=prose(message.get("description", "")),
        fields=list(_fields(message.get("payload", {}), depth=0)),
        closed=message.get("payload", {}).get("additionalProperties") is False,
        example=example,
    )


def _fields(schema: dict, depth: int):
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        yield Field(name, _kind(prop), name in required, inline(_text(prop)), depth)
        nested = _object_of(prop)
        if nested is not None:
            yield from _fields(nested, depth + 1)


def _object_of(schema: dict) -> dict | None:
    """The object schema a field holds (itself, or its array's items), to list its fields."""
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    return schema if schema.get("properties") else None


def _kind(schema: dict) -> str:
    if "const" in schema:
        return json.dumps(schema["const"])
    if "oneOf" in schema:
        return " or ".join(_kind(option) for option in schema["oneOf"])
    kinds = schema.get("type", "any")
    kind = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if schema.get("format"):
        kind += f" ({schema['format']})"
    if kind == "array" and "items" in schema:
        kind = f"array of {_kind(schema['items'])}"
    if "minimum" in schema or "maximum" in schema:
        kind += f" [{schema.get('minimum', '')}..{schema.get('maximum', '')}]"
    return kind


def _text(schema: dict) -> str:
    parts = [schema.get("description", "")]
    for option in [schema, *schema.get("oneOf", [])]:
        if "enum" in option:
            parts.append("One of: " + ", ".join(f"`{value}`" for value in option["enum"]))
    return " ".join(part.strip() for part in parts if part)


def _resolver(document: dict):
    """Returns a function that replaces the document's local `$ref`s by what they point to
    (keys beside a `$ref` win), deeply."""

    def pointed(ref: str):
        node = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                return resolve({**pointed(node["$ref"]), **siblings})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")


def prose(text: str) -> str:
    """The document's descriptions (a little Markdown: paragraphs, `code`, **bold**) as HTML."""
    paragraphs = re.split(r"\n\s*\n", (text or "").strip())
    return mark_safe("\n".join(f"<p>{inline(p)}</p>" for p in paragraphs if p))  # noqa: S308


def inline(text: str | None) -> str:
    """One line of the document's prose as HTML: escaped first, then `code` and **bold**."""
    html = escape(" ".join((text or "").split()))
    html = _CODE.sub(r"<code>\1</code>", html)
    return mark_safe(_STRONG.sub(r"<strong>\1</strong>", html))  # noqa: S308 - escaped above
