"""The client's models against the server's own OpenAPI document, and the package's shape.

Every result dataclass has exactly the properties of the schema it parses (a field the server
adds or drops fails here, not in a user's code), and the package's modules import each other
without a cycle.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Dict, List, Set

import httpx

from sslmem_client import models

# Client model -> the OpenAPI component it parses.
SCHEMAS = {
    models.ImageScore: "ScoreResult",
    models.ImageError: "ImageFailure",
    models.ScoreParams: "ScoreSettings",
    models.ScoreResponse: "ScoreResponse",
    models.Alignment: "AlignResult",
    models.AlignResponse: "AlignResponse",
    models.Embedding: "EmbedResult",
    models.EmbedResponse: "EmbedResponse",
    models.Limits: "LimitsInfo",
    models.Defaults: "DefaultsInfo",
    models.BundleInfo: "BundleResponse",
}


def test_every_model_has_exactly_its_schemas_properties(server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    schemas = doc["components"]["schemas"]
    mismatches = []
    for cls, name in SCHEMAS.items():
        assert name in schemas, f"{cls.__name__}: no component {name} in /openapi.json"
        props = set(schemas[name].get("properties", {}))
        fields = {f.name for f in dataclasses.fields(cls)}
        if props != fields:
            mismatches.append(
                f"{cls.__name__} vs {name}: only in the client {sorted(fields - props)}, "
                f"only in the server {sorted(props - fields)}"
            )
    assert not mismatches, "\n".join(mismatches)


def _type_checking_only(tree: ast.AST) -> Set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: imports that never run."""
    out: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                out.update(id(n) for n in ast.walk(child))
    return out


def _imports(path: Path, package: str) -> Set[str]:
    """The package's modules that `path` imports when it runs, anywhere in it (functions
    included; not the imports only type checkers see)."""
    out: Set[str] = set()
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.module and node.module.startswith(package + "."):
                out.add(node.module.split(".")[1])
    return out


def test_the_package_has_no_import_cycle() -> None:
    pkg = Path(models.__file__).parent
    mods = {p.stem: p for p in pkg.glob("*.py") if p.stem != "__init__"}
    graph: Dict[str, Set[str]] = {m: _imports(p, pkg.name) & set(mods) for m, p in mods.items()}
    assert graph["client"], "the walk sees imports"

    def cycle_from(n: str, path: List[str], done: Set[str]) -> List[str]:
        if n in path:
            return path[path.index(n) :] + [n]
        if n in done:
            return []
        for d in sorted(graph[n]):
            c = cycle_from(d, path + [n], done)
            if c:
                return c
        done.add(n)
        return []

    done: Set[str] = set()
    for m in sorted(graph):
        c = cycle_from(m, [], done)
        assert not c, "import cycle: " + " -> ".join(c)
