"""Validates real responses against the served OpenAPI 3.1 document (JSON Schema 2020-12)."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


class OpenApiCheck:
    """``check(method, path, status, content_type, body)`` raises AssertionError on any mismatch."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=_spec())
        self.registry = Registry().with_resource("urn:openapi", resource)
        self.routes = [(self._pattern(path), path) for path in document["paths"]]
        self.seen: set[tuple[str, str, int]] = set()

    @staticmethod
    def _pattern(path: str) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")

    def __call__(self, method: str, path: str, status: int, content_type: str, body: Any) -> None:
        path = path.split("?", 1)[0]
        template = next((t for pattern, t in self.routes if pattern.match(path)), None)
        assert template is not None, f"{method} {path} is not in the OpenAPI document"
        operation = self.document["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the OpenAPI document"
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get("default")
        assert response is not None, f"{method} {template} answered {status}, which is not documented"
        media = response.get("content", {}).get(content_type)
        assert media is not None, f"{method} {template} {status} answered {content_type}, not documented"
        pointer = f"#/paths/{_escape(template)}/{method.lower()}/responses/{status if str(status) in responses else 'default'}/content/{_escape(content_type)}/schema"
        validator = Draft202012Validator({"$ref": "urn:openapi" + pointer}, registry=self.registry)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {template} {status}: {errors[0].message} at {list(errors[0].path)}"
        self.seen.add((method, template, status))


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _spec() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012
