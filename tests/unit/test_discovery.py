"""Replica discovery from hand-written container attrs: every mode, both naming worlds.

The attrs follow `docker inspect` (Name, Config.Labels, HostConfig.NetworkMode,
NetworkSettings.Ports) and the sparse list shape (Names, Labels, Ports list) as the Engine
returns them; values are trimmed to what discovery reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from x402console.settings.model import Discovery, DockerHost, ProverSettings, Replica, Settings
from x402console.sources.discovery import (
    container_filters,
    discover_static,
    event_filters,
    host_address,
    matches_discovery,
    select_replicas,
)

LOCAL = DockerHost()


def compose_labels(project: str, service: str, number: str | None, oneoff: str = "False", **extra: str) -> dict:
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "com.docker.compose.oneoff": oneoff,
        **extra,
    }
    if number is not None:
        labels["com.docker.compose.container-number"] = number
    return labels


def inspect_attrs(
    name: str,
    labels: dict,
    *,
    cid: str | None = None,
    status: str = "running",
    network: str = "host",
    ports: dict | None = None,
    created: str = "2025-01-01T00:00:00.000000001Z",
) -> dict[str, Any]:
    return {
        "Id": cid or f"id-{name}",
        "Name": f"/{name}",
        "Created": created,
        "State": {"Status": status, "Running": status == "running"},
        "Config": {"Labels": labels},
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Ports": ports or {}, "IPAddress": "" if network == "host" else "172.18.0.5"},
    }


def settings(mode: str = "compose", **kw: Any) -> Settings:
    discovery_kw = {k: kw.pop(k) for k in list(kw) if k in Discovery.__dataclass_fields__}
    prover_kw = {k: kw.pop(k) for k in list(kw) if k in ("port", "memory_limit_bytes")}
    return Settings(discovery=Discovery(mode=mode, **discovery_kw), prover=ProverSettings(**prover_kw), **kw)


# --------------------------------------------------------------------------- compose mode


def test_runbook_names_compose_mode_sorted_by_container_number():
    attrs = [
        inspect_attrs("x402-prover-10", compose_labels("x402", "prover", "10")),
        inspect_attrs("x402-prover-2", compose_labels("x402", "prover", "2")),
        inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1")),
        inspect_attrs("x402-nginx-1", compose_labels("x402", "nginx", "1")),
        inspect_attrs("other-prover-1", compose_labels("other", "prover", "1")),
    ]
    found = select_replicas(attrs, settings(), LOCAL)
    assert [r.name for r in found] == ["prover-1", "prover-2", "prover-10"]  # numeric, not text, order
    assert [r.number for r in found] == [1, 2, 10]
    assert all(r.kind == "container" and r.docker_host == "local" for r in found)
    assert found[0].container_id == "id-x402-prover-1"
    assert found[0].health_url == "http://127.0.0.1:8080/health"
    assert found[0].metrics_url == "http://127.0.0.1:8080/metrics"


def test_oneoff_containers_skipped_unless_included():
    attrs = [
        inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1")),
        inspect_attrs("x402-prover-run-3f2a", compose_labels("x402", "prover", "2", oneoff="True")),
    ]
    assert [r.name for r in select_replicas(attrs, settings(), LOCAL)] == ["prover-1"]
    included = select_replicas(attrs, settings(include_oneoff=True), LOCAL)
    assert [r.name for r in included] == ["prover-1", "prover-2"]


@pytest.mark.parametrize("bad", [None, "", "abc", "0", "-1", "1.5"])
def test_missing_or_invalid_numbers_are_skipped(bad):
    attrs = [
        inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1")),
        inspect_attrs("x402-prover-x", compose_labels("x402", "prover", bad)),
    ]
    assert [r.container_id for r in select_replicas(attrs, settings(), LOCAL)] == ["id-x402-prover-1"]


def test_gaps_in_numbering_are_kept_as_they_are():
    attrs = [inspect_attrs(f"x402-prover-{n}", compose_labels("x402", "prover", str(n))) for n in (1, 4, 5)]
    assert [r.name for r in select_replicas(attrs, settings(), LOCAL)] == ["prover-1", "prover-4", "prover-5"]


def test_recreate_in_progress_prefers_the_running_container():
    old = inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"), cid="old", status="exited")
    new = inspect_attrs(
        "0123456789ab_x402-prover-1",
        compose_labels("x402", "prover", "1", **{"com.docker.compose.replace": "old"}),
        cid="new",
        created="2025-01-02T00:00:00Z",
    )
    found = select_replicas([old, new], settings(), LOCAL)
    assert [(r.name, r.container_id) for r in found] == [("prover-1", "new")]
    # both stopped: the canonical name wins over the temporary one
    new["State"] = {"Status": "created"}
    assert [r.container_id for r in select_replicas([new, old], settings(), LOCAL)] == ["old"]


def test_port_label_gives_each_host_networked_replica_its_port():
    attrs = [
        inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1", **{"x402console.drill.port": "18080"})),
        inspect_attrs("x402-prover-2", compose_labels("x402", "prover", "2", **{"x402console.port": "18081"})),
        inspect_attrs("x402-prover-3", compose_labels("x402", "prover", "3", **{"x402console.port": "junk"})),
    ]
    urls = [r.health_url for r in select_replicas(attrs, settings(), LOCAL)]
    assert urls == [
        "http://127.0.0.1:18080/health",
        "http://127.0.0.1:18081/health",
        "http://127.0.0.1:8080/health",  # an unusable label falls back to prover.port
    ]


def test_published_port_is_used_on_bridge_networks():
    # The real compose file: prover-2 publishes 8081 -> 8080.
    ports = {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}, {"HostIp": "::", "HostPort": "8081"}]}
    attrs = [inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"), network="x402-network", ports=ports)]
    (r,) = select_replicas(attrs, settings(), LOCAL)
    assert r.health_url == "http://127.0.0.1:8081/health"
    assert r.metrics_url == "http://127.0.0.1:8081/metrics"


def test_published_port_bound_to_one_address_uses_that_address():
    ports = {"9000/tcp": [{"HostIp": "127.0.0.5", "HostPort": "19000"}]}
    attrs = [inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"), network="bridge", ports=ports)]
    (r,) = select_replicas(attrs, settings(port=9000), LOCAL)
    assert r.health_url == "http://127.0.0.5:19000/health"


def test_unpublished_bridge_container_is_reached_on_its_network_address_locally():
    attrs = [inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"), network="bridge")]
    (r,) = select_replicas(attrs, settings(), LOCAL)
    assert r.health_url == "http://172.18.0.5:8080/health"


def test_remote_hosts_use_the_engine_address():
    tcp = DockerHost(name="box", url="tcp://10.1.2.3:2376")
    ssh = DockerHost(name="ops", url="ssh://deploy@prover-host.example:2222")
    host_net = [inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"))]
    (r,) = select_replicas(host_net, settings(), tcp)
    assert r.health_url == "http://10.1.2.3:8080/health" and r.docker_host == "box"
    (r,) = select_replicas(host_net, settings(), ssh)
    assert r.health_url == "http://prover-host.example:8080/health"
    # a loopback-bound port on a remote engine is only reachable there: fall back to its address
    ports = {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    bridged = [inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"), network="bridge", ports=ports)]
    (r,) = select_replicas(bridged, settings(), tcp)
    assert r.health_url == "http://10.1.2.3:18080/health"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("unix:///var/run/docker.sock", "127.0.0.1"),
        ("tcp://10.0.0.7:2375", "10.0.0.7"),
        ("ssh://me@ops-box", "ops-box"),
        ("tcp://[fd00::7]:2375", "fd00::7"),
    ],
)
def test_host_address(url, address):
    assert host_address(url) == address


def test_ipv6_engine_address_is_bracketed_in_urls():
    host = DockerHost(name="v6", url="tcp://[fd00::7]:2375")
    (r,) = select_replicas([inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"))], settings(), host)
    assert r.health_url == "http://[fd00::7]:8080/health"


def test_sparse_list_shape_is_understood():
    listed = {
        "Id": "abc",
        "Names": ["/x402-prover-1"],
        "Labels": compose_labels("x402", "prover", "1"),
        "State": "running",
        "Created": 1735689600,
        "Ports": [{"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 18080, "Type": "tcp"}],
        "HostConfig": {"NetworkMode": "bridge"},
    }
    (r,) = select_replicas([listed], settings(), LOCAL)
    assert (r.name, r.container_id, r.health_url) == ("prover-1", "abc", "http://127.0.0.1:18080/health")


# --------------------------------------------------------------------------- services mode


def real_compose_attrs() -> list[dict[str, Any]]:
    """`docker compose up` of the real deploy/docker-compose.yml, run from deploy/."""
    return [
        inspect_attrs("deploy-prover-2-1", compose_labels("deploy", "prover-2", "1"), network="x402-network",
                      ports={"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}]}),
        inspect_attrs("deploy-prover-1-1", compose_labels("deploy", "prover-1", "1"), network="x402-network",
                      ports={"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}),
        inspect_attrs("deploy-server-1", compose_labels("deploy", "server", "1"), network="x402-network",
                      ports={"3000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "3000"}]}),
        inspect_attrs("deploy-prometheus-1", compose_labels("deploy", "prometheus", "1"), network="x402-network"),
    ]


def test_real_compose_file_services_mode():
    found = select_replicas(real_compose_attrs(), settings("services", compose_project="deploy"), LOCAL)
    assert [r.name for r in found] == ["prover-1", "prover-2"]
    assert [r.container_id for r in found] == ["id-deploy-prover-1-1", "id-deploy-prover-2-1"]
    assert [r.health_url for r in found] == ["http://127.0.0.1:8080/health", "http://127.0.0.1:8081/health"]


def test_real_compose_file_is_not_found_with_the_runbook_names():
    # project x402 / service prover (the runbook) matches nothing in the real deployment
    assert select_replicas(real_compose_attrs(), settings(), LOCAL) == []
    assert select_replicas(real_compose_attrs(), settings(compose_project="deploy"), LOCAL) == []


def test_services_mode_keeps_the_configured_service_order_and_names_extra_containers():
    attrs = real_compose_attrs() + [
        inspect_attrs("deploy-prover-1-2", compose_labels("deploy", "prover-1", "2")),
        inspect_attrs("deploy-prover-1-run-1", compose_labels("deploy", "prover-1", "3", oneoff="True")),
    ]
    found = select_replicas(attrs, settings("services", compose_project="deploy",
                                            compose_services=("prover-2", "prover-1")), LOCAL)
    assert [r.name for r in found] == ["prover-2", "prover-1", "prover-1-2"]


# --------------------------------------------------------------------------- pattern mode


def test_pattern_mode_matches_container_names():
    attrs = [
        inspect_attrs("x402-prover-2", {}),
        inspect_attrs("x402-prover-1", {}),
        inspect_attrs("deploy-prover-1-1", compose_labels("deploy", "prover-1", "1")),
        inspect_attrs("deploy_prover-2_1", {}),  # Compose v1 naming: not matched by the defaults
        inspect_attrs("x402-server-1", {}),
        inspect_attrs("prover", {}),
    ]
    found = select_replicas(attrs, settings("pattern"), LOCAL)
    assert [r.name for r in found] == ["deploy-prover-1-1", "x402-prover-1", "x402-prover-2"]
    assert [r.number for r in found] == [1, 1, 2]
    v1 = select_replicas(attrs, settings("pattern", name_patterns=("*_prover-*_[0-9]*",)), LOCAL)
    assert [r.name for r in v1] == ["deploy_prover-2_1"]


def test_pattern_mode_natural_order():
    attrs = [inspect_attrs(f"x402-prover-{n}", {}) for n in (10, 9, 1)]
    assert [r.name for r in select_replicas(attrs, settings("pattern"), LOCAL)] == [
        "x402-prover-1", "x402-prover-9", "x402-prover-10"]


def test_static_mode_selects_no_containers():
    attrs = [inspect_attrs("x402-prover-1", compose_labels("x402", "prover", "1"))]
    assert select_replicas(attrs, settings("static", replicas=(Replica("a", "http://a/health", "http://a/metrics"),)), LOCAL) == []


# --------------------------------------------------------------------------- static entries


def test_static_entry_with_the_same_name_supplies_urls_and_control():
    static = Replica("prover-1", "http://127.0.0.1:9999/health", "http://127.0.0.1:9999/metrics",
                     control_url="http://127.0.0.1:9998")
    other_host = Replica("prover-2", "http://h/health", "http://h/metrics", docker_host="elsewhere")
    attrs = [inspect_attrs(f"x402-prover-{n}", compose_labels("x402", "prover", str(n))) for n in (1, 2)]
    found = select_replicas(attrs, settings(replicas=(static, other_host)), LOCAL)
    assert found[0].health_url == "http://127.0.0.1:9999/health"
    assert found[0].control_url == "http://127.0.0.1:9998"
    assert found[0].container_id == "id-x402-prover-1"
    assert found[1].health_url == "http://127.0.0.1:8080/health"  # the entry names another host


def test_discover_static_kinds():
    s = settings(
        "static",
        replicas=(
            Replica("p1", "http://127.0.0.1:1/health", "http://127.0.0.1:1/metrics", pid_file=Path("/run/p1.pid")),
            Replica("p2", "http://127.0.0.1:2/health", "http://127.0.0.1:2/metrics", log_file=Path("/var/log/p2.log")),
            Replica("p3", "http://10.0.0.3:8080/health", "http://10.0.0.3:8080/metrics", control_url="",
                    docker_host="local"),
        ),
    )
    found = discover_static(s)
    assert [(r.name, r.kind) for r in found] == [("p1", "process"), ("p2", "process"), ("p3", "url")]
    assert found[1].log_file == "/var/log/p2.log" and found[0].log_file is None
    assert found[2].control_url is None and found[2].docker_host == "local"
    assert found[2].health_url == "http://10.0.0.3:8080/health"


# --------------------------------------------------------------------------- filters and events


def test_engine_filters_narrow_by_labels():
    assert container_filters(settings()) == {
        "label": ["com.docker.compose.project=x402", "com.docker.compose.service=prover"]}
    assert container_filters(settings("services", compose_project="deploy")) == {
        "label": ["com.docker.compose.project=deploy"]}
    assert container_filters(settings("pattern")) == {}
    ev = event_filters(settings())
    assert ev["type"] == ["container"] and "health_status" in ev["event"] and "die" in ev["event"]
    assert not any(a.startswith("exec") for a in ev["event"])  # healthcheck probes are noise
    assert ev["label"] == container_filters(settings())["label"]


def test_event_attributes_match_like_containers():
    attributes = {"name": "x402-prover-3", **compose_labels("x402", "prover", "3")}
    wrapped = {"Name": attributes["name"], "Labels": attributes}
    assert matches_discovery(wrapped, settings())
    assert not matches_discovery(wrapped, settings(compose_service="server"))
    assert matches_discovery(wrapped, settings("pattern"))
    oneoff = {"Name": "x", "Labels": compose_labels("x402", "prover", "1", oneoff="True")}
    assert not matches_discovery(oneoff, settings())
    assert matches_discovery(oneoff, settings(include_oneoff=True))


def test_junk_attrs_are_ignored():
    junk: list[Any] = [None, "x", {}, {"Config": None}, {"Labels": "nope", "Name": 5}]
    assert select_replicas(junk, settings(), LOCAL) == []
    assert select_replicas(junk, settings("pattern"), LOCAL) == []


def test_unknown_host_name_is_a_clear_error():
    from x402console.sources.discovery import DiscoveryError, discover_containers

    with pytest.raises(DiscoveryError, match="no \\[\\[docker.hosts\\]\\] entry named 'nope'"):
        discover_containers(None, settings(), "nope")
