#!/usr/bin/env python3
"""Checks docker-compose.yml without a Docker engine.

It validates the file against the Compose Specification's JSON schema (deploy/schemas/) and then
checks what the schema cannot see: that every `depends_on` names a service of the file, that a
`condition: service_healthy` dependency has a health check, that named volumes are declared, and
that every `build.target` is a `FROM ... AS <target>` stage of the Dockerfile it builds. And what
one host needs to come up and stay up:

- every service has a health check and a restart policy other than `no`;
- every bind-mounted file or directory exists;
- the files services are pointed at inside their containers (Prometheus' `--config.file`,
  Grafana's home dashboard and dashboard providers, RabbitMQ's definitions, ICON_FCM_CREDENTIALS)
  are mounted from files that exist;
- Prometheus' scrape targets and Grafana's data source name a service of the file and a port it
  listens on (from its `ICON_*_ADDR` setting or its published ports).

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


def bind_mounts(spec, compose_dir: Path) -> list[tuple[Path, str]]:
    """The service's bind mounts as (host path, container path)."""
    out = []
    for vol in spec.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) < 2:
                continue
            source, target = parts[0], parts[1]
        else:
            if vol.get("type", "volume") != "bind":
                continue
            source, target = vol.get("source", ""), vol.get("target", "")
        if source.startswith((".", "/")):
            out.append(((compose_dir / source).resolve(), target))
    return out


def host_path(spec, compose_dir: Path, container_path: str) -> Path | None:
    """Where `container_path` comes from on the host, through the longest bind mount over it."""
    best = None
    for source, target in bind_mounts(spec, compose_dir):
        t = target.rstrip("/")
        if container_path == t or container_path.startswith(t + "/"):
            if best is None or len(t) > len(best[1]):
                best = (source, t)
    if best is None:
        return None
    rest = container_path[len(best[1]) :].lstrip("/")
    return best[0] / rest if rest else best[0]


def environment(spec) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def listening_ports(spec) -> set[int]:
    """Ports a service listens on inside the network: its ICON_*_ADDR settings, the container
    side of its published ports, and `expose`."""
    ports = set()
    for key, value in environment(spec).items():
        if key.startswith("ICON_") and key.endswith("_ADDR"):
            m = re.search(r":(\d+)$", value)
            if m:
                ports.add(int(m.group(1)))
    for p in spec.get("ports") or []:
        target = p.get("target") if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0]
        if target and str(target).isdigit():
            ports.add(int(target))
    for p in spec.get("expose") or []:
        if str(p).split("/")[0].isdigit():
            ports.add(int(str(p).split("/")[0]))
    return ports


def command_args(spec) -> list[str]:
    cmd = spec.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def target_errors(where: str, target: str, services: dict) -> list[str]:
    """`host:port` must be a service of the file listening on that port."""
    host, _, port = target.rpartition(":")
    if host not in services:
        return [f"{where}: {target!r} is not a service of the compose file"]
    if not port.isdigit() or int(port) not in listening_ports(services[host] or {}):
        known = ", ".join(map(str, sorted(listening_ports(services[host] or {})))) or "none"
        return [f"{where}: {host!r} does not listen on {port} (its ports: {known})"]
    return []


def one_host_errors(doc, compose_dir: Path) -> list[str]:
    out = []
    services = doc.get("services") or {}
    for name, spec in services.items():
        spec = spec or {}
        if not has_healthcheck(spec):
            out.append(f"services.{name}: no healthcheck")
        if spec.get("restart", "no") == "no":
            out.append(f"services.{name}: no restart policy (restart: unless-stopped)")
        for source, target in bind_mounts(spec, compose_dir):
            if not source.exists():
                out.append(f"services.{name}.volumes: {source} (mounted at {target}) does not exist")

        # Files named inside the container that must come from this repository.
        wanted: list[tuple[str, str]] = []
        env = environment(spec)
        for key in ("ICON_FCM_CREDENTIALS", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"):
            if env.get(key, "").startswith("/"):
                wanted.append((f"environment.{key}", env[key]))
        for arg in command_args(spec):
            if arg.startswith("--config.file="):
                wanted.append(("command --config.file", arg.split("=", 1)[1]))
        for where, path in wanted:
            host = host_path(spec, compose_dir, path)
            if host is None or not host.is_file():
                out.append(f"services.{name}.{where}: {path} is not mounted from a file that exists")

        # Prometheus: its scrape targets.
        for arg in command_args(spec):
            if not arg.startswith("--config.file="):
                continue
            config = host_path(spec, compose_dir, arg.split("=", 1)[1])
            if config is None or not config.is_file():
                continue
            prom = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            for job in prom.get("scrape_configs") or []:
                for sc in job.get("static_configs") or []:
                    for t in sc.get("targets") or []:
                        out += target_errors(
                            f"{config.name}: job {job.get('job_name')!r}", t, services
                        )

        # Grafana: provisioned data sources and dashboard providers.
        provisioning = host_path(spec, compose_dir, "/etc/grafana/provisioning")
        if provisioning is not None and provisioning.is_dir():
            for f in sorted((provisioning / "datasources").glob("*.y*ml")):
                for ds in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get(
                    "datasources"
                ) or []:
                    m = re.match(r"^https?://([^/:]+):(\d+)", ds.get("url", ""))
                    if m:
                        out += target_errors(
                            f"{f.name}: data source {ds.get('name')!r}",
                            f"{m.group(1)}:{m.group(2)}",
                            services,
                        )
            for f in sorted((provisioning / "dashboards").glob("*.y*ml")):
                for prov in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get(
                    "providers"
                ) or []:
                    path = (prov.get("options") or {}).get("path", "")
                    dashboards = [
                        host_path(spec, compose_dir, t)
                        for _, t in bind_mounts(spec, compose_dir)
                        if t == path or t.startswith(path.rstrip("/") + "/")
                    ]
                    if not any(
                        d is not None and (d.suffix == ".json" and d.is_file() or d.is_dir())
                        for d in dashboards
                    ):
                        out.append(
                            f"services.{name}: {f.name}: provider {prov.get('name')!r} reads "
                            f"{path}, where no dashboard is mounted"
                        )

        # RabbitMQ: the definitions its configuration loads.
        for source, target in bind_mounts(spec, compose_dir):
            if not (target.startswith("/etc/rabbitmq/") and source.suffix == ".conf"):
                continue
            if not source.is_file():
                continue
            for line in source.read_text(encoding="utf-8").splitlines():
                m = re.match(r"^\s*(?:definitions\.local\.path|load_definitions)\s*=\s*(\S+)", line)
                if not m:
                    continue
                defs = host_path(spec, compose_dir, m.group(1))
                if defs is None or not defs.is_file():
                    out.append(
                        f"services.{name}: {source.name} loads {m.group(1)}, "
                        "which is not mounted from a file that exists"
                    )
                    continue
                try:
                    json.loads(defs.read_text(encoding="utf-8"))
                except ValueError as e:
                    out.append(f"services.{name}: {defs.name} is not JSON: {e}")
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
        errors += one_host_errors(doc, compose.resolve().parent)
    if errors:
        for e in errors:
            print(f"{compose.name}: {e}", file=sys.stderr)
        return 1
    print(f"compose file OK: {len(doc.get('services') or {})} services")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
