"""docs/openapi.yaml is a valid OpenAPI 3 document and names every route the server serves
(the live server is fuzzed against it in tests/integration/test_api_schema.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_is_valid_openapi() -> None:
    validate(yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text()))


def test_every_served_route_is_described() -> None:
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    source = (ROOT / "scryp" / "server" / "api.py").read_text()
    served = set(re.findall(r'add_(?:get|post)\("([^"]+)"', source))
    assert served, "no route found in scryp/server/api.py"
    assert served == set(spec["paths"])
