"""A real Prometheus for the drill: generated configuration, the drill's alert rules, its process."""

from __future__ import annotations

import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from string import Template

import httpx

from x402console.drill.processes import ManagedProcess

PROMETHEUS_CANDIDATES = ("prometheus", "/usr/bin/prometheus")


def find_prometheus() -> str | None:
    for c in PROMETHEUS_CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    return None


def _duration(seconds: float) -> str:
    return f"{max(1, int(round(seconds)))}s"


def render_rules(memory_limit_bytes: int, for_scale: float = 1.0) -> str:
    """The drill rule file with its placeholders filled in.

    `for_scale` shortens every `for:` (tests use a small one so alerts fire within seconds).
    """
    text = resources.files("x402console.drill.monitoring").joinpath("drill_alerts.yml").read_text()
    # safe_substitute: the file also holds Prometheus template variables ($labels, $value).
    out = Template(text).safe_substitute(
        MEMORY_LIMIT_BYTES=str(int(memory_limit_bytes)),
        FOR_15S=_duration(15 * for_scale),
        FOR_30S=_duration(30 * for_scale),
        FOR_60S=_duration(60 * for_scale),
    )
    if "${" in out:
        raise ValueError("drill_alerts.yml has a placeholder the drill does not fill")
    return out


def render_config(targets: list[str], rules_file: Path, scrape_interval: float = 5.0) -> str:
    """prometheus.yml scraping each replica under job "prover" with an `instance` per replica."""
    lines = [
        "global:",
        f"  scrape_interval: {_duration(scrape_interval)}",
        f"  evaluation_interval: {_duration(scrape_interval)}",
        "  external_labels:",
        "    cluster: 'x402-zk-payments'",
        "    environment: 'drill'",
        "rule_files:",
        f"  - '{rules_file}'",
        "scrape_configs:",
        "  - job_name: 'prover'",
        "    metrics_path: /metrics",
        f"    scrape_interval: {_duration(scrape_interval)}",
        f"    scrape_timeout: {_duration(min(scrape_interval, 4))}",
        "    static_configs:",
        "      - targets:",
    ]
    lines += [f"          - '{t}'" for t in targets]
    return "\n".join(lines) + "\n"


class PrometheusProcess:
    def __init__(self, workdir: Path, port: int, targets: list[str], memory_limit_bytes: int,
                 log_path: Path, binary: str | None = None, for_scale: float = 1.0,
                 scrape_interval: float = 5.0) -> None:
        self.workdir = workdir
        self.port = port
        self.targets = targets
        self.binary = binary or find_prometheus()
        self.memory_limit_bytes = memory_limit_bytes
        self.for_scale = for_scale
        self.scrape_interval = scrape_interval
        self.log_path = log_path
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_files(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules = self.workdir / "drill_alerts.yml"
        rules.write_text(render_rules(self.memory_limit_bytes, self.for_scale))
        real = resources.files("x402console.drill.monitoring")
        for name in ("alerts.yml", "DIFFERENCES.md"):
            (self.workdir / name).write_text(real.joinpath(name).read_text())
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(render_config(self.targets, rules, self.scrape_interval))
        return cfg

    def start(self) -> ManagedProcess:
        if not self.binary:
            raise FileNotFoundError("no prometheus binary on PATH")
        cfg = self.write_files()
        argv = [
            self.binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        self.process = ManagedProcess("prometheus", argv, self.log_path)
        self.process.start()
        return self.process

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process and not self.process.alive():
                raise RuntimeError(f"prometheus exited with {self.process.returncode()}; see {self.log_path}")
            try:
                r = httpx.get(f"{self.url}/-/ready", timeout=1.0)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {last}")


if __name__ == "__main__":  # pragma: no cover - manual aid: print the rendered rules
    sys.stdout.write(render_rules(512 * 1024 * 1024))
