#!/usr/bin/env python3
"""Checks docker-compose.yml without a Docker engine.

It validates the file against the Compose Specification's JSON schema (deploy/schemas/) and then
checks what the schema cannot see: that every `depends_on` names a service of the file, that a
`condition: service_healthy` dependency has a health check, that named volumes are declared, and
that every `build.target` is a `FROM ... AS <target>` stage of the Dockerfile it builds.

    pip install jsonschema pyyaml
    python3 deploy/check-compose.py [path/to/docker-compose.yml]

Prints `compose file OK: N services`, or one line per problem and exits 1.
"""

import json
import re
import sys
from pathlib import Path

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"check-compose: {e.name} is missing; run: pip install jsonschema pyyaml")

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
SCHEMA = DEPLOY / "schemas" / "compose-spec.json"

# `FROM [--platform=...] image [AS name]`, case-insensitive as Docker reads it.
FROM_LINE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*\S+(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)


def stages(dockerfile: Path) -> set[str]:
    """The stage names of a Dockerfile (line continuations joined first)."""
    text = re.sub(r"\\\r?\n", " ", dockerfile.read_text(encoding="utf-8"))
    names = set()
    for line in text.splitlines():
        m = FROM_LINE.match(line)
        if m and m.group(1):
            names.add(m.group(1).lower())
    return names


def schema_errors(doc, schema) -> list[str]:
    # The schema is draft-07 but spells its `$schema` without the trailing `#`, which
    # jsonschema does not recognise; name the draft instead of letting it guess.
    validator = jsonschema.Draft7Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"schema: {where}: {err.message}")
    return out


def depends_on_targets(spec) -> dict[str, dict]:
    """`depends_on` in either form, as {service: options}."""
    deps = spec.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {} for name in deps}
    return {name: (opts or {}) for name, opts in deps.items()}


def has_healthcheck(spec) -> bool:
    hc = spec.get("healthcheck")
    if not hc or hc.get("disable"):
        return False
    test = hc.get("test")
    return not (isinstance(test, list) and test[:1] == ["NONE"])


def semantic_errors(doc, compose_dir: Path) -> list[str]:
    out = []
    services = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    stage_cache: dict[Path, set[str]] = {}

    for name, spec in services.items():
        spec = spec or {}
        for dep, opts in depends_on_targets(spec).items():
            if dep not in services:
                out.append(f"services.{name}.depends_on: no service named {dep!r}")
            elif opts.get("condition") == "service_healthy" and not has_healthcheck(
                services[dep] or {}
            ):
                out.append(
                    f"services.{name}.depends_on.{dep}: condition service_healthy, "
                    f"but {dep!r} has no healthcheck"
                )
            if dep == name:
                out.append(f"services.{name}.depends_on: depends on itself")

        for vol in spec.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source")
            kind = "bind" if isinstance(vol, str) else vol.get("type", "volume")
            is_path = not source or source.startswith((".", "/", "~", "$"))
            if kind in ("volume", "bind") and not is_path and source not in declared_volumes:
                out.append(f"services.{name}.volumes: named volume {source!r} is not declared")

        build = spec.get("build")
        if isinstance(build, dict) and build.get("target"):
            context = compose_dir / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                out.append(f"services.{name}.build: no Dockerfile at {dockerfile}")
                continue
            if dockerfile not in stage_cache:
                stage_cache[dockerfile] = stages(dockerfile)
            if build["target"].lower() not in stage_cache[dockerfile]:
                known = ", ".join(sorted(stage_cache[dockerfile])) or "none"
                out.append(
                    f"services.{name}.build.target: {build['target']!r} is not a stage of "
                    f"{dockerfile.relative_to(REPO) if dockerfile.is_relative_to(REPO) else dockerfile} "
                    f"(stages: {known})"
                )
    return out


def main(argv: list[str]) -> int:
    compose = Path(argv[1]) if len(argv) > 1 else REPO / "docker-compose.yml"
    try:
        doc = yaml.safe_load(compose.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        print(f"{compose}: {e}", file=sys.stderr)
        return 1
    if not isinstance(doc, dict):
        print(f"{compose}: not a mapping at the top level", file=sys.stderr)
        return 1
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))

    errors = schema_errors(doc, schema)
    # Semantic checks assume the structure is right; skip them on a broken file.
    if not errors:
        errors = semantic_errors(doc, compose.resolve().parent)
    if errors:
        for e in errors:
            print(f"{compose.name}: {e}", file=sys.stderr)
        return 1
    print(f"compose file OK: {len(doc.get('services') or {})} services")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
