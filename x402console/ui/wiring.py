"""Which observation sources a configuration calls for, besides the hub's HTTP ones.

Lives beside the UI because only the console assembles the full set; the sources themselves
know nothing of the UI.
"""

from __future__ import annotations

from typing import Any

CONTAINER_MODES = ("compose", "services", "pattern")


def observation_sources(settings: Any) -> list[Any]:
    sources: list[Any] = []
    if settings.discovery.mode in CONTAINER_MODES:
        from x402console.sources.docker_logs import DockerLogSource
        from x402console.sources.docker_source import DockerSource

        for host in settings.docker_hosts:
            sources.append(DockerSource(settings, host))
            sources.append(DockerLogSource(settings, host))
    if any(r.pid_file for r in settings.replicas):
        from x402console.sources.process_source import ProcessSource

        sources.append(ProcessSource(settings))
    if any(r.log_file for r in settings.replicas):
        from x402console.sources.process_source import FileLogSource

        sources.append(FileLogSource(settings))
    return sources
