"""docker/: every compose service runs a real ``mpcdp`` invocation whose flags parse, on a real federation."""

import json
from pathlib import Path

import pytest

from services import federation as fed
from services.cli import build_parser
from tests.support import ROOT

COMPOSE = json.loads((ROOT / "docker" / "compose.yaml").read_text())  # JSON syntax is valid YAML
SERVICES = COMPOSE["services"]


def host_path(container_path: str, volumes) -> Path | None:
    """Where a container path comes from, for bind mounts of the repository."""
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if source.startswith(".") and container_path.startswith(target + "/"):
            return (ROOT / "docker" / source / container_path[len(target) + 1 :]).resolve()
    return None


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_command_is_a_parsing_mpcdp_invocation(name):
    service = SERVICES[name]
    args = build_parser().parse_args(service["command"])
    assert callable(args.run)
    if getattr(args, "federation", None):
        path = host_path(args.federation, service["volumes"])
        assert path is not None and path.exists(), f"{name}: {args.federation} is not mounted from the repository"
        federation = fed.load(path)
        if getattr(args, "id", None):
            role = {"party": "party", "text-node": "text"}[service["command"][0]]
            assert federation.node(args.id).has(role)
            assert service["hostname"] == args.id
        if service["command"][0] == "coordinator":
            assert federation.coordinator().name == service["hostname"]


def test_every_serving_node_of_the_federation_has_a_service():
    federation = fed.load(ROOT / "examples" / "docker" / "federation.toml")
    for node in federation.nodes:
        if node.address:
            host, port = node.address.rsplit(":", 1)
            assert host in SERVICES and SERVICES[host]["hostname"] == host
            assert port in " ".join(SERVICES[host]["command"])
        if node.data:
            assert Path(node.data).exists()


def test_dockerfile_builds_the_one_mpcdp_image():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mpcdp"]' in text
    for copied in ("mpcdp", "services", "protos", "pyproject.toml"):
        assert (ROOT / copied).exists()
    images = {s.get("image") for s in SERVICES.values()}
    assert images == {"mpcdp:latest"}
