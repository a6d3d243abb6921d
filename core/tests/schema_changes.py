"""The changes between two OpenAPI documents that break an app built against the older one.

On the wire, as an app meets them: an operation gone or renamed (its generated function), a
new required input, a request field or value no longer accepted, a narrower request type, a
response field gone or no longer always there, a response type changed, or a response value
the app has never seen (a new enum member fails a generated client's parsing). Additions an
app can ignore are not breaking: new operations, optional inputs, response fields and
statuses. Names of components are not compared (the wire is the same).
"""

from collections.abc import Iterator

METHODS = ("get", "put", "post", "patch", "delete")
MAX_DEPTH = 20  # nesting compared (a schema that refers to itself stops here)
# Constraints on a request value that only a narrower API tightens: (keyword, tighter when).
LIMITS = {
    "maxLength": min,
    "maximum": min,
    "maxItems": min,
    "minLength": max,
    "minimum": max,
    "minItems": max,
}


def breaking_changes(old: dict, new: dict) -> list[str]:
    return list(_operations(old, new))


def _operations(old: dict, new: dict) -> Iterator[str]:
    for path, old_item in old.get("paths", {}).items():
        new_item = new.get("paths", {}).get(path, {})
        for method in METHODS:
            if method not in old_item:
                continue
            where = f"{method.upper()} {path}"
            if method not in new_item:
                yield f"{where}: removed"
                continue
            before, after = old_item[method], new_item[method]
            named, renamed = before.get("operationId"), after.get("operationId")
            if named != renamed:
                yield f"{where}: operation id {named} is now {renamed}"
            yield from _parameters(where, old, new, before, after)
            yield from _request_body(where, old, new, before, after)
            yield from _responses(where, old, new, before, after)


def _parameters(where, old, new, before, after) -> Iterator[str]:
    known = {(p["in"], p["name"]): p for p in before.get("parameters", [])}
    for parameter in after.get("parameters", []):
        key = (parameter["in"], parameter["name"])
        if key not in known:
            if parameter.get("required"):
                yield f"{where}: new required {parameter['in']} parameter {parameter['name']}"
            continue
        yield from _compare(
            f"{where} {parameter['in']} parameter {parameter['name']}",
            Side(old, known[key].get("schema", {})),
            Side(new, parameter.get("schema", {})),
            request=True,
        )


def _request_body(where, old, new, before, after) -> Iterator[str]:
    old_body, new_body = before.get("requestBody"), after.get("requestBody")
    if new_body is None:
        return
    if old_body is None:
        if new_body.get("required"):
            yield f"{where}: a request body is now required"
        return
    for media, content in new_body.get("content", {}).items():
        if media not in old_body.get("content", {}):
            continue
        yield from _compare(
            f"{where} request",
            Side(old, old_body["content"][media].get("schema", {})),
            Side(new, content.get("schema", {})),
            request=True,
        )
    if not set(old_body.get("content", {})) & set(new_body.get("content", {})):
        yield f"{where}: the request body's media types changed"


def _responses(where, old, new, before, after) -> Iterator[str]:
    for status, response in before.get("responses", {}).items():
        if not status.startswith("2"):
            continue
        if status not in after.get("responses", {}):
            yield f"{where}: no longer answers {status}"
            continue
        new_content = after["responses"][status].get("content", {})
        for media, content in response.get("content", {}).items():
            if media not in new_content:
                yield f"{where} {status}: no longer answers {media}"
                continue
            yield from _compare(
                f"{where} {status}",
                Side(old, content.get("schema", {})),
                Side(new, new_content[media].get("schema", {})),
                request=False,
            )


class Side:
    """A schema and the document its $refs point into."""

    def __init__(self, document: dict, schema: dict):
        self.document = document
        self.schema = self._resolve(schema)

    def _resolve(self, schema: dict) -> dict:
        nullable = schema.get("nullable", False)
        while True:
            if "$ref" in schema:
                target = self.document
                for part in schema["$ref"].removeprefix("#/").split("/"):
                    target = target[part]
                schema = target
            elif _single_all_of(schema):  # drf-spectacular's nullable $ref
                nullable = nullable or schema.get("nullable", False)
                schema = schema["allOf"][0]
            else:
                return schema | {"nullable": True} if nullable else schema

    def at(self, schema: dict) -> "Side":
        return Side(self.document, schema)


def _single_all_of(schema: dict) -> bool:
    return len(schema.get("allOf", [])) == 1 and "$ref" in schema["allOf"][0]


def _compare(where: str, old: Side, new: Side, *, request: bool, depth=0) -> Iterator[str]:
    """What in `new` breaks a caller written for `old`: as input the server reads (request) or
    output the app reads (response)."""
    if depth > MAX_DEPTH:
        return
    before, after = old.schema, new.schema
    if before.get("type") and after.get("type") and before["type"] != after["type"]:
        yield f"{where}: type {before['type']} is now {after['type']}"
        return
    if request:
        if before.get("nullable") and not after.get("nullable"):
            yield f"{where}: null is no longer accepted"
        if "enum" in after:
            dropped = set(before.get("enum", after["enum"])) - set(after["enum"])
            if "enum" not in before or dropped:
                yield f"{where}: values no longer accepted: {sorted(dropped) or 'all but the enum'}"
        for keyword, tighter in LIMITS.items():
            if keyword in after and (
                keyword not in before or tighter(before[keyword], after[keyword]) != before[keyword]
            ):
                yield f"{where}: {keyword} is now {after[keyword]}"
    else:
        if after.get("nullable") and not before.get("nullable"):
            yield f"{where}: may now be null"
        if "enum" in before and "enum" in after:
            added = set(after["enum"]) - set(before["enum"])
            if added:
                yield f"{where}: new values an app has never seen: {sorted(added)}"
    yield from _properties(where, old, new, request=request, depth=depth)
    if "items" in before and "items" in after:
        yield from _compare(
            f"{where}[]",
            old.at(before["items"]),
            new.at(after["items"]),
            request=request,
            depth=depth + 1,
        )


def _properties(where, old: Side, new: Side, *, request: bool, depth) -> Iterator[str]:
    before, after = old.schema, new.schema
    old_properties = before.get("properties", {})
    new_properties = after.get("properties", {})
    old_required, new_required = set(before.get("required", [])), set(after.get("required", []))
    for name, schema in new_properties.items():
        if name not in old_properties:
            if request and name in new_required:
                yield f"{where}: new required field {name}"
            continue
        if request and name in new_required - old_required:
            yield f"{where}: field {name} is now required"
        if not request and name in old_required - new_required:
            yield f"{where}: field {name} may now be missing"
        yield from _compare(
            f"{where}.{name}",
            old.at(old_properties[name]),
            new.at(schema),
            request=request,
            depth=depth + 1,
        )
    if not request:
        for name in old_properties.keys() - new_properties.keys():
            yield f"{where}: field {name} removed"
