"""``tcmerge demo``: the whole story on a throwaway embedded PostgreSQL.

1. Start a PostgreSQL server (embedded by default) and create three databases:
   the pre-11.5 databases of nodes 1A and 1B (``tcdb1``, ``tcdb2``) and the
   merge target (``tcmerged``).
2. Fill the node databases with the seeded generator, with overlaps of every
   kind: rooms in both, msg_id collisions, exact duplicates, affiliation
   conflicts, bans, diverged rooms.
3. Describe the cluster in a topology file (group ``sub1`` = 1A + 1B, Text
   Conference stopped on both, as Cisco's procedure asks).
4. Validate, merge (one transaction), verify; the merged database is then
   assigned to both nodes of ``sub1`` in the topology file.
5. Run the seed's failover/fallback scenario on the merged database: 1B loads
   1A's rooms from it when 1A's TC service fails.
6. Remove everything, unless ``keep``.

The library returns a ``DemoResult`` and reports each stage through ``on_stage``
as it completes; it never prints.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from tcmerge import api
from tcmerge.dburl import DatabaseRef, libpq_uri, without_password
from tcmerge.errors import ConfigError
from tcmerge.generate import GenerationResult, GeneratorSpec, generate
from tcmerge.ha.scenario import load_scenario
from tcmerge.ha.simulate import SimulationResult, run_scenario
from tcmerge.merge import MergeResult, VerifyReport
from tcmerge.providers import get_provider
from tcmerge.providers.local import LocalPostgresServer
from tcmerge.request import build_request
from tcmerge.topology import load_topology
from tcmerge.validate import ValidationReport

#: The variable the demo's topology names for the password (set only in memory).
PASSWORD_ENV = "TCMERGE_DEMO_PASSWORD"
SCENARIO = "failover-use-case"
NODE_DATABASES = {"1A": "tcdb1", "1B": "tcdb2"}
TARGET = "tcmerged"

#: Stage names passed to ``on_stage``, in order, with the payload type of each.
STAGES = ("server", "generate", "validate", "merge", "verify", "topology", "failover",
          "cleanup")

OnStage = Callable[[str, Any], None]


def default_spec(rooms: int = 120, messages: int = 150, seed: int = 11) -> GeneratorSpec:
    """Two node databases with every kind of overlap, but no ROOM_CONFLICT (it blocks)."""
    return GeneratorSpec(
        seed=seed, rooms_per_node=rooms, messages_per_room=messages, members_per_room=8,
        shared_rooms=0.2, duplicate_ratio=0.3, colliding_ids=True,
        affiliation_conflicts=4, bans=3, diverged_rooms=2, room_conflicts=0,
    )


@dataclass
class DemoResult:
    """Everything the demo did; ``ok`` when validation, merge, verification and the
    failover scenario all passed."""

    server: str = ""
    databases: dict[str, str] = field(default_factory=dict)
    generation: GenerationResult | None = None
    validation: ValidationReport | None = None
    merge: MergeResult | None = None
    verification: VerifyReport | None = None
    topology_file: str | None = None
    topology_assignment: dict[str, str] = field(default_factory=dict)
    failover: SimulationResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    kept: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        parts = (self.validation, self.merge, self.verification, self.failover)
        return all(p is not None and p.ok for p in parts)

    def as_dict(self) -> dict[str, Any]:
        def part(value: Any) -> Any:
            return None if value is None else value.as_dict()

        return {
            "ok": self.ok,
            "server": self.server,
            "databases": self.databases,
            "generation": part(self.generation),
            "validation": part(self.validation),
            "merge": part(self.merge),
            "verification": part(self.verification),
            "topology": {"file": self.topology_file, "assignment": self.topology_assignment},
            "failover": part(self.failover),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "kept": self.kept,
        }


def _topology(path: Path, urls: dict[str, str]) -> None:
    """The demo cluster: group sub1 (1A, 1B), each node on its pre-11.5 database."""
    data = {
        "cluster": {"name": "cup", "domain": "example.com", "id": "cup"},
        "databases": {name: {"url": url, "password_env": PASSWORD_ENV}
                      for name, url in urls.items()},
        "groups": {"sub1": {"high_availability": True, "mode": "balanced",
                            "nodes": ["1A", "1B"]}},
        "nodes": {
            node: {"id": number, "group": "sub1", "database": NODE_DATABASES[node],
                   "text_conference": "stopped", "users": users}
            for node, number, users in (("1A", 1, ["andy"]), ("1B", 2, ["bob"]))
        },
    }
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


class _Clock:
    def __init__(self, result: DemoResult, on_stage: OnStage | None) -> None:
        self.result, self.on_stage = result, on_stage
        self.mark = time.monotonic()

    def done(self, stage: str, payload: Any) -> None:
        now = time.monotonic()
        self.result.seconds[stage] = now - self.mark
        self.mark = now
        if self.on_stage is not None:
            self.on_stage(stage, payload)


def run_demo(*, keep: bool = False, provider: str | None = None,
             spec: GeneratorSpec | None = None, on_stage: OnStage | None = None) -> DemoResult:
    """Run the whole story; see the module docstring. Raises TcmergeError on failure.

    Stops early (returning what it has) when validation or the merge refuses.
    """
    result = DemoResult()
    clock = _Clock(result, on_stage)
    started = time.monotonic()
    chosen = get_provider(provider)
    if keep and not chosen.can_detach:
        chosen.close()
        raise ConfigError("--keep works with the embedded and system providers, whose "
                          "servers tcmerge starts itself")
    workdir = Path(tempfile.mkdtemp(prefix="tcmerge-demo-"))
    try:
        server = chosen.start_server("demo")
        result.server = f"{chosen.name} PostgreSQL {server.version}"
        refs = {name: server.create_database(name) for name in (*NODE_DATABASES.values(),
                                                                TARGET)}
        result.databases = {name: ref.label for name, ref in refs.items()}
        clock.done("server", result.server)

        sources = [refs[NODE_DATABASES[node]] for node in ("1A", "1B")]
        result.generation = generate(sources, spec or default_spec())
        api.upgrade_schema(refs[TARGET])
        clock.done("generate", result.generation)

        topology = workdir / "cluster.toml"
        _topology(topology, {name: _public(ref) for name, ref in refs.items()})
        result.topology_file = str(topology)
        secret = str(refs[TARGET].url.password or "")
        request = build_request([], TARGET, topology=str(topology), group="sub1",
                                environ={PASSWORD_ENV: secret})
        result.validation = api.validate(request)
        clock.done("validate", result.validation)
        if not result.validation.ok:
            return result

        result.merge = api.run(request)
        clock.done("merge", result.merge)
        if not result.merge.ok or result.merge.job_id is None:
            return result

        result.verification = api.verify_job(refs[TARGET], result.merge.job_id, sources)
        clock.done("verify", result.verification)

        nodes = load_topology(topology).nodes
        result.topology_assignment = {name: str(node.database) for name, node in nodes.items()}
        clock.done("topology", result.topology_assignment)

        result.failover = run_scenario(load_scenario(SCENARIO), refs[TARGET])
        clock.done("failover", result.failover)

        if keep and isinstance(server, LocalPostgresServer):
            pgpass = server.detach()
            result.kept = {
                # libpq URIs, as psql takes them (the topology keeps SQLAlchemy's form)
                **{name: libpq_uri(ref) for name, ref in refs.items()},
                "PGPASSFILE": str(pgpass),
                "psql": f"PGPASSFILE={shlex.quote(str(pgpass))} psql "
                        f"{shlex.quote(libpq_uri(refs[TARGET]))}",
                # the kept topology file goes with the server
                "stop": f"{server.stop_command()} && rm -rf {shlex.quote(str(workdir))}",
                "topology": str(topology),
            }
        return result
    finally:
        chosen.close()  # a detached (kept) server is not closed
        if result.kept is None:
            shutil.rmtree(workdir, ignore_errors=True)
        result.seconds["total"] = time.monotonic() - started
        clock.done("cleanup", result.kept)


def _public(ref: DatabaseRef) -> str:
    return without_password(ref.url).render_as_string(hide_password=False)
