"""The drill environment: a whole simulated x402 system on loopback, started and stopped as one.

What runs (process mode): prover replicas prover-1..N as local processes, a traffic generator,
and, when their binaries exist, Prometheus scraping the replicas with the drill's alert rules
and nginx in front of them with a `blocked_ips.conf` deny file. Docker mode runs the same
provers as containers named and labelled like Compose v2 (project x402, service prover).

The environment writes a console configuration (config.toml in the state directory) that the
console reads like any other, and a runtime.json from which a later run cleans up after a
crashed one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from x402console.drill.nginx_env import NginxProcess, find_nginx
from x402console.drill.processes import ManagedProcess, ProcessRecord, is_same_process
from x402console.drill.prometheus_env import PrometheusProcess, find_prometheus
from x402console.drill.scenarios import Scenario, pick_scenario
from x402console.drill.state import Runtime, StateDir

DEFAULT_MEMORY_LIMIT = 512 * 1024 * 1024


@dataclass
class DrillOptions:
    state_dir: Path
    mode: str = "process"  # process | docker
    replicas: int = 2
    prover_port: int = 8080  # first replica; the others follow (8081, ...) when free
    prometheus_port: int = 9090
    nginx_port: int = 8088
    profile: str = "coded"
    log_format: str | None = None
    prometheus: str = "auto"  # auto | on | off
    nginx: str = "auto"
    traffic_rate: float = 15.0
    traffic_clients: int = 150
    invalid_ratio: float = 0.02
    scenario: str | None = None
    scenario_delay: float = 30.0
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    for_scale: float = 1.0  # shortens alert `for:` durations (tests)
    scrape_interval: float = 5.0
    backup_interval: float = 600.0
    seed: int | None = None


@dataclass
class Component:
    name: str
    kind: str
    state: str
    detail: str = ""


@dataclass
class ReplicaInfo:
    name: str
    number: int
    port: int
    control_port: int
    process: ManagedProcess | None = None
    container: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class PortPicker:
    """Hands out the preferred ports when free, otherwise free ephemeral ones, never twice."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def pick(self, preferred: int | None) -> int:
        if preferred and preferred not in self.taken and port_is_free(preferred):
            self.taken.add(preferred)
            return preferred
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in self.taken:
                self.taken.add(port)
                return port


def wait_http_ok(url: str, timeout: float, alive=lambda: True, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what or url} exited before answering")
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise TimeoutError(f"{what or url} not healthy after {timeout}s ({last})")


class DrillEnvironment:
    def __init__(self, options: DrillOptions) -> None:
        self.opts = options
        self.state = StateDir(options.state_dir)
        self.drill_id = uuid.uuid4().hex[:12]
        self.control_token = secrets.token_urlsafe(24)
        self.replicas: list[ReplicaInfo] = []
        self.prometheus: PrometheusProcess | None = None
        self.nginx: NginxProcess | None = None
        self.traffic: ManagedProcess | None = None
        self.attack: ManagedProcess | None = None
        self.docker = None  # DockerReplicas in docker mode
        self.scenario: Scenario | None = None
        self.scenario_armed_at: float | None = None
        self.notes: list[str] = []
        self._timer: threading.Timer | None = None
        self._ports = PortPicker()
        self._started = False
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.state.lock()
        try:
            stopped = self.state.cleanup_leftovers()
            stopped += self._cleanup_leftover_containers()
            if stopped:
                self.notes.append("cleaned up after an earlier drill: " + ", ".join(stopped))
            self.state.prepare()
            self._started = True
            self._start_replicas()
            self._trust_current_keys()
            self._start_prometheus()
            self._start_nginx()
            self._start_traffic()
            self.write_config()
            self._save_runtime()
            if self.opts.scenario:
                self.scenario = pick_scenario(self.opts.scenario, self._rng())
                self._timer = threading.Timer(self.opts.scenario_delay, self.arm_scenario)
                self._timer.daemon = True
                self._timer.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
                self._timer = None
            for proc in (self.attack, self.traffic):
                if proc:
                    proc.stop(timeout=3)
            self.attack = self.traffic = None
            if self.nginx and self.nginx.process:
                self.nginx.process.stop(timeout=5)
            if self.prometheus and self.prometheus.process:
                self.prometheus.process.stop(timeout=10)
            for r in self.replicas:
                if r.process:
                    r.process.stop(timeout=5)
            if self.docker is not None:
                try:
                    self.docker.stop_all(timeout=3)
                    self.docker.remove_all()
                except Exception as exc:  # the engine may have gone away; next start cleans up
                    self.notes.append(f"docker clean-up failed: {exc}")
            if self._started:
                # Processes the console's actions started (a restarted or added replica) are
                # recorded only in runtime.json: stop them too before forgetting them.
                self.state.cleanup_leftovers()
            self._started = False
            self.state.unlock()

    def __enter__(self) -> "DrillEnvironment":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _rng(self):
        import random

        return random.Random(self.opts.seed)

    # --------------------------------------------------------------------------- replicas
    def _service_args(self, first: bool) -> list[str]:
        """Simulator flags shared by every replica (placement flags come separately)."""
        st = self.state
        args = [
            "--profile", self.opts.profile,
            "--db", str(st.db), "--backup-dir", str(st.backups), "--keys-dir", str(st.keys),
            "--exempt-ip", "127.0.0.1",
        ]
        if self.opts.profile == "intended":
            args.append("--pprof")
        if self.opts.log_format:
            args += ["--log-format", self.opts.log_format]
        # One replica runs the scheduled backups: two would write the same file names.
        if first and self.opts.backup_interval > 0:
            args += ["--backup-interval", str(int(self.opts.backup_interval))]
        return args

    def _sim_args(self, name: str, port: int, control_port: int, first: bool) -> list[str]:
        return [
            "--host", "127.0.0.1", "--port", str(port), "--name", name,
            "--state-dir", str(self.state.root),
            "--control-port", str(control_port),
            # One argument: a token_urlsafe token may start with "-", which argparse would
            # take for an option and refuse.
            f"--control-token={self.control_token}",
            *self._service_args(first),
        ]

    def _start_replicas(self) -> None:
        for i in range(1, self.opts.replicas + 1):
            port = self._ports.pick(self.opts.prover_port + i - 1 if self.opts.prover_port else None)
            control = self._ports.pick(None)
            self.replicas.append(ReplicaInfo(f"prover-{i}", i, port, control))
        if self.opts.mode == "docker":
            self._start_docker_replicas()
            return
        for i, r in enumerate(self.replicas):
            argv = [sys.executable, "-m", "x402console.drill.sim", *self._sim_args(r.name, r.port, r.control_port, i == 0)]
            r.process = ManagedProcess(r.name, argv, self.state.logs / f"{r.name}.log",
                                       pid_file=self.state.logs / f"{r.name}.pid")
            r.process.start()
            # Sequential: the first replica creates the keys the others load.
            wait_http_ok(f"{r.url}/health", 30, r.process.alive, r.name)
            self._save_runtime()

    def _start_docker_replicas(self) -> None:
        import docker

        from x402console.drill import containers

        client = docker.from_env(timeout=30)
        containers.ensure_image(client)
        self.docker = containers.DockerReplicas(client, project="x402", service="prover", drill_id=self.drill_id)
        for i, r in enumerate(self.replicas):
            spec = containers.ReplicaSpec(
                number=r.number,
                port=r.port,
                control_port=r.control_port,
                control_token=self.control_token,
                state_dir=self.state.root,
                env={},
                sim_args=self._service_args(i == 0),
                memory_limit=self.opts.memory_limit,
            )
            started = self.docker.start([spec])
            r.container = getattr(started[0], "name", None) if started else f"x402-prover-{r.number}"
            wait_http_ok(f"{r.url}/health", 60, what=r.container or r.name)
            self._save_runtime()

    def _cleanup_leftover_containers(self) -> list[str]:
        try:
            import docker

            from x402console.drill import containers
        except ImportError:
            return []
        try:
            client = docker.from_env(timeout=5)
            client.ping()
        except Exception:
            return []  # no engine: nothing of ours can be running there
        # Only orphans: another drill running on the same engine keeps its containers.
        removed = containers.cleanup_leftovers(client, orphans_only=True)
        return [f"container {n}" for n in (removed or [])]

    def _trust_current_keys(self) -> None:
        """Keep the keys the provers started with as the trusted copy (runbook: backup/verification_key.json)."""
        vk = self.state.keys / "verification_key.json"
        trusted = self.state.keys / "backup" / "verification_key.json"
        if vk.exists():
            trusted.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(vk, trusted)

    # --------------------------------------------------------------------------- others
    def _wanted(self, setting: str, binary: str | None, what: str) -> bool:
        if setting == "off":
            return False
        if binary is None:
            if setting == "on":
                raise FileNotFoundError(f"{what} was asked for but no {what} binary is installed")
            self.notes.append(f"{what} not installed: the drill runs without it")
            return False
        return True

    def _start_prometheus(self) -> None:
        binary = find_prometheus()
        if not self._wanted(self.opts.prometheus, binary, "prometheus"):
            return
        port = self._ports.pick(self.opts.prometheus_port)
        self.prometheus = PrometheusProcess(
            self.state.prometheus, port, [f"127.0.0.1:{r.port}" for r in self.replicas],
            self.opts.memory_limit, self.state.logs / "prometheus.log", binary,
            for_scale=self.opts.for_scale, scrape_interval=self.opts.scrape_interval,
        )
        self.prometheus.start()
        self.prometheus.wait_ready()

    def _start_nginx(self) -> None:
        binary = find_nginx()
        if not self._wanted(self.opts.nginx, binary, "nginx"):
            return
        port = self._ports.pick(self.opts.nginx_port)
        self.nginx = NginxProcess(self.state.nginx, port, [f"127.0.0.1:{r.port}" for r in self.replicas],
                                  self.state.logs / "nginx.log", binary)
        self.nginx.start()
        self.nginx.wait_ready()

    def _traffic_argv(self, rate: float, clients: int, invalid_ratio: float, attack: tuple[int, float] | None) -> list[str]:
        if self.nginx:
            # Through nginx from 127.0.0.x sources: a deny line in nginx stops a client for real.
            targets, ip_mode = [self.nginx.url], "source"
        else:
            targets, ip_mode = [r.url for r in self.replicas], "xff"
        argv = [sys.executable, "-m", "x402console", "traffic"]
        for t in targets:
            argv += ["--target", t]
        argv += ["--rate", str(rate), "--clients", str(clients), "--ip-mode", ip_mode,
                 "--invalid-ratio", str(invalid_ratio), "--duration", str(8 * 3600),
                 "--max-requests", str(2_000_000)]
        if attack:
            argv += ["--attack-ips", str(attack[0]), "--attack-rate", str(attack[1])]
        return argv

    def _start_traffic(self, invalid_ratio: float | None = None) -> None:
        if self.opts.traffic_rate <= 0:
            return
        ratio = self.opts.invalid_ratio if invalid_ratio is None else invalid_ratio
        argv = self._traffic_argv(self.opts.traffic_rate, self.opts.traffic_clients, ratio, None)
        self.traffic = ManagedProcess("traffic", argv, self.state.logs / "traffic.log")
        self.traffic.start()

    # --------------------------------------------------------------------------- scenario
    def control(self, replica: ReplicaInfo):
        from x402console.drill.sim.control_client import SimControl

        return SimControl(replica.control_url, self.control_token)

    def arm_scenario(self) -> None:
        """Switch the scenario's faults on (called by the timer, or directly by tests)."""
        with self._lock:
            if not self._started or self.scenario is None:
                return
            sc = self.scenario
            names = [r.name for r in self.replicas]
            by_name = {r.name: r for r in self.replicas}
            for replica, fault, params in sc.fault_plan(names, self.opts.memory_limit):
                try:
                    self.control(by_name[replica]).set_fault(fault, **params)
                except Exception as exc:
                    # A crash fault kills the replica before it can answer: that is success.
                    if fault != "crash":
                        self.notes.append(f"scenario {sc.name}: {fault} on {replica} failed: {exc}")
            if sc.traffic and self.traffic:
                self.traffic.stop(timeout=3)
                self._start_traffic(float(sc.traffic.get("invalid_ratio", self.opts.invalid_ratio)))
            if sc.attack and self.opts.traffic_rate >= 0:
                argv = self._traffic_argv(0.0, 0, 0.0, (sc.attack.ips, sc.attack.rate))
                self.attack = ManagedProcess("traffic-attack", argv, self.state.logs / "traffic-attack.log")
                self.attack.start()
            self.scenario_armed_at = time.time()
            self._save_runtime()

    # --------------------------------------------------------------------------- records
    def _save_runtime(self) -> None:
        procs = [r.process.record() for r in self.replicas if r.process and r.process.proc]
        for extra in (self.prometheus.process if self.prometheus else None,
                      self.nginx.process if self.nginx else None, self.traffic, self.attack):
            if extra and extra.proc:
                procs.append(extra.record())
        ports = {r.name: r.port for r in self.replicas}
        ports.update({f"{r.name}-control": r.control_port for r in self.replicas})
        if self.prometheus:
            ports["prometheus"] = self.prometheus.port
        if self.nginx:
            ports["nginx"] = self.nginx.port
        procs = self._merge_foreign_records(procs)
        ports.update(self._foreign_ports(ports))
        rt = Runtime(
            drill_id=self.drill_id,
            mode=self.opts.mode,
            processes=procs,
            containers=[r.container for r in self.replicas if r.container],
            ports=ports,
            scenario=self.scenario.name if self.scenario and self.scenario_armed_at else None,
        )
        data = rt.to_dict()
        data["control_token"] = self.control_token
        # Written whole each time; the token lets a console in drill mode reach the fault API.
        tmp = self.state.runtime_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.state.runtime_file)

    def _merge_foreign_records(self, own: list[ProcessRecord]) -> list[ProcessRecord]:
        """Keep what the console's actions recorded: a replica it restarted (a new, live pid
        under an old name) or one it added by scaling must survive the drill's next save."""
        previous = self.state.load_runtime()
        if previous is None or previous.drill_id != self.drill_id:
            return own
        by_name = {r.name: r for r in own}
        for rec in previous.processes:
            mine = by_name.get(rec.name)
            if rec.pid != (mine.pid if mine else None) and is_same_process(rec.pid, rec.start_time):
                by_name[rec.name] = rec
        return list(by_name.values())

    def _foreign_ports(self, own: dict[str, int]) -> dict[str, int]:
        previous = self.state.load_runtime()
        if previous is None or previous.drill_id != self.drill_id:
            return {}
        return {k: v for k, v in previous.ports.items() if k not in own}

    def config_dict(self) -> dict[str, Any]:
        st = self.state
        cfg: dict[str, Any] = {
            "environment": {
                "name": f"drill ({self.opts.mode})",
                "drill": True,
                "journal": str(st.root / "journal.db"),
            },
            "prover": {
                "port": 8080,
                "log_format": self.opts.log_format or ("gin" if self.opts.profile == "coded" else "json"),
                "honours_env": self.opts.profile == "intended",
                "pprof": self.opts.profile == "intended",
                "memory_limit_bytes": self.opts.memory_limit,
            },
            "replicas": [
                {
                    "name": r.name,
                    "health_url": f"{r.url}/health",
                    "metrics_url": f"{r.url}/metrics",
                    "log_file": str(st.logs / f"{r.name}.log") if self.opts.mode == "process" else "",
                    "pid_file": str(st.logs / f"{r.name}.pid") if self.opts.mode == "process" else "",
                    "control_url": r.control_url,
                }
                for r in self.replicas
            ],
            "database": {"path": str(st.db), "backups_dir": str(st.backups)},
            "circuits": {
                "verification_key": str(st.keys / "verification_key.json"),
                "trusted_verification_key": str(st.keys / "backup" / "verification_key.json"),
                "workdir": str(st.keys),
            },
        }
        if self.opts.mode == "docker":
            cfg["discovery"] = {"mode": "compose", "compose_project": "x402", "compose_service": "prover"}
            cfg["docker"] = {"hosts": [{"name": "local", "url": "unix:///var/run/docker.sock"}]}
        else:
            cfg["discovery"] = {"mode": "static"}
        cfg["prometheus"] = {"url": self.prometheus.url if self.prometheus else "", "job": "prover"}
        if self.nginx:
            cfg["nginx"] = {
                "deny_file": str(self.nginx.deny_file),
                "test_command": self.nginx.test_command(),
                "reload_command": self.nginx.reload_command(),
                "url": self.nginx.url,
            }
        return cfg

    def write_config(self) -> Path:
        from x402console.config import write_config

        write_config(self.config_dict(), self.state.config)
        return self.state.config

    # --------------------------------------------------------------------------- status
    def components(self) -> list[Component]:
        out: list[Component] = []
        for r in self.replicas:
            if r.process:
                rc = r.process.returncode()
                state = "running" if rc is None else f"exited ({rc})"
                out.append(Component(r.name, "process", state, f"{r.url}  pid {r.process.pid}"))
            else:
                out.append(Component(r.container or r.name, "container", self._container_state(r), r.url))
        if self.prometheus and self.prometheus.process:
            out.append(Component("prometheus", "process", _pstate(self.prometheus.process), self.prometheus.url))
        if self.nginx and self.nginx.process:
            out.append(Component("nginx", "process", _pstate(self.nginx.process),
                                 f"{self.nginx.url}  deny file {self.nginx.deny_file}"))
        if self.traffic:
            out.append(Component("traffic", "process", _pstate(self.traffic),
                                 f"{self.opts.traffic_rate:g} req/s from {self.opts.traffic_clients} clients"))
        if self.attack:
            out.append(Component("traffic-attack", "process", _pstate(self.attack), "attack traffic"))
        return out

    def _container_state(self, r: ReplicaInfo) -> str:
        if self.docker is None or not r.container:
            return "unknown"
        try:
            c = self.docker.client.containers.get(r.container)
            return c.status
        except Exception as exc:
            return f"unknown ({type(exc).__name__})"


def _pstate(p: ManagedProcess) -> str:
    rc = p.returncode()
    return "running" if rc is None else f"exited ({rc})"
