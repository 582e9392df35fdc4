"""Command line: `x402console [--config FILE]`, `drill`, `sim`, `traffic`, `config`.

Heavy modules are imported inside each command, so `sim` and `traffic` (which the drill starts
many times) never pay for the UI.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from pathlib import Path

from x402console import __version__


def _add_drill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--docker", action="store_true", help="run the provers as containers on the local Docker engine")
    p.add_argument("--scenario", help="arm one of the runbook's incidents after a delay: service_down, "
                   "high_error_rate, slow_performance, invalid_proofs, db_corruption, ddos, memory_leak, random")
    p.add_argument("--scenario-delay", type=float, default=30.0, metavar="SECONDS",
                   help="seconds before the scenario is armed (default 30)")
    p.add_argument("--state-dir", type=Path, help="where the drill keeps its files (default: "
                   "$XDG_STATE_HOME/x402console/drill)")
    p.add_argument("--replicas", type=int, default=2, help="prover replicas (default 2)")
    p.add_argument("--port", type=int, default=8080, help="port of prover-1; the others follow (default 8080)")
    p.add_argument("--profile", choices=("coded", "intended"), default="coded",
                   help="simulate the prover as coded (default) or as documented")
    p.add_argument("--log-format", choices=("gin", "json"), help="prover log format (default: by profile)")
    p.add_argument("--prometheus", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--nginx", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--rate", type=float, default=15.0, help="background traffic, requests/s (0 = none)")
    p.add_argument("--memory-limit-mb", type=int, default=512, help="memory limit of each replica (MB)")
    p.add_argument("--seed", type=int, help="random seed (scenario choice)")
    p.add_argument("--headless", action="store_true",
                   help="no screen: print what runs and keep the environment up until SIGINT/SIGTERM")
    p.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                   help="with --headless: stop after this many seconds (0 = until signalled)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="x402console", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"x402console {__version__}")
    parser.add_argument("--config", type=Path, help="configuration file (default: $XDG_CONFIG_HOME/x402console/config.toml)")
    parser.add_argument("--read-only", action="store_true", help="refuse every action that changes anything")
    parser.add_argument("--role", choices=("commander", "scribe", "observer"), default=None,
                        help="your role on the shared journal: commander (everything), scribe (notes, checklist,"
                             " timeline; no remediation that changes the system), observer (read-only);"
                             " default commander, observer with --read-only")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="open the console on the configured environment (the default)")
    drill = sub.add_parser("drill", help="start a simulated x402 system and open the console on it")
    _add_drill_args(drill)
    sub.add_parser("sim", help="run one simulated x402 prover (see `x402console sim --help`)", add_help=False)
    sub.add_parser("traffic", help="generate proof requests against loopback targets", add_help=False)
    cfg = sub.add_parser("config", help="check a configuration file, or print the default path")
    cfg.add_argument("action", choices=("check", "path"))
    from x402console.postmortem.cli import add_parser as add_postmortem_parser

    add_postmortem_parser(sub)
    from x402console.status.cli import add_parser as add_status_parser

    add_status_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `sim` and `traffic` own their flags: hand everything after the word over untouched.
    for word, runner in (("sim", _run_sim), ("traffic", _run_traffic)):
        if word in argv and all(a.startswith("-") for a in argv[: argv.index(word)]):
            return runner(argv[argv.index(word) + 1 :])
    args = build_parser().parse_args(argv)
    if args.command == "drill":
        return _run_drill(args)
    if args.command == "config":
        return _run_config(args)
    if args.command == "status":
        from x402console.status.cli import run_status

        return run_status(args)
    if args.command == "postmortem":
        from x402console.postmortem.cli import run_postmortem

        return run_postmortem(args)
    return _run_console(args)


def _run_sim(rest: list[str]) -> int:
    from x402console.drill.sim.main import run_sim

    return run_sim(rest)


def _run_traffic(rest: list[str]) -> int:
    from x402console.drill.traffic import run_traffic

    return run_traffic(rest)


def _run_config(args: argparse.Namespace) -> int:
    from x402console.config import ConfigError, default_config_path, load_config

    path = args.config or default_config_path()
    if args.action == "path":
        print(path)
        return 0
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"x402console: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: ok ({len(settings.replicas)} static replicas, discovery {settings.discovery.mode})")
    return 0


def configure_frame_rate(settings, environ=os.environ) -> None:
    """Set Textual's frame rate before textual is imported (it reads TEXTUAL_FPS once).

    Over SSH (SSH_CONNECTION set) every frame costs bandwidth on a possibly slow link, so the
    console draws less often and without animations; an explicit TEXTUAL_FPS always wins.
    """
    if "TEXTUAL_FPS" in environ:
        return
    if environ.get("SSH_CONNECTION"):
        environ["TEXTUAL_FPS"] = str(settings.ui.ssh_fps)
        environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    else:
        environ["TEXTUAL_FPS"] = str(settings.ui.fps)


def _run_console(args: argparse.Namespace) -> int:
    # No cyclic garbage collection until the first frame is on screen (the console turns it
    # back on then, after freezing what start-up built): importing Textual and the panes
    # allocates enough to run dozens of collections over an ever larger heap, about 45 ms of
    # the ~350 ms start-up on the development machine. Start-up makes next to no garbage cycles.
    gc.disable()
    from x402console.config import ConfigError, load_config

    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"x402console: {exc}", file=sys.stderr)
        return 2
    configure_frame_rate(settings)
    # The replicas' first answers are fetched while Textual loads (sources/early.py).
    from x402console.sources.early import start_early_fetch

    early = start_early_fetch(settings)
    from x402console.ui.app import run_console

    return run_console(settings, read_only=args.read_only, role=args.role, early=early)


def _drill_options(args: argparse.Namespace):
    from x402console.config import default_state_dir
    from x402console.drill.environment import DrillOptions

    return DrillOptions(
        state_dir=args.state_dir or default_state_dir() / "drill",
        mode="docker" if args.docker else "process",
        replicas=args.replicas,
        prover_port=args.port,
        profile=args.profile,
        log_format=args.log_format,
        prometheus=args.prometheus,
        nginx=args.nginx,
        traffic_rate=args.rate,
        scenario=args.scenario,
        scenario_delay=args.scenario_delay,
        memory_limit=args.memory_limit_mb * 1024 * 1024,
        seed=args.seed,
    )


def _run_drill(args: argparse.Namespace) -> int:
    from x402console.drill.environment import DrillEnvironment
    from x402console.drill.scenarios import ScenarioError, pick_scenario

    if args.scenario:
        try:
            pick_scenario(args.scenario)
        except ScenarioError as exc:
            print(f"x402console: {exc}", file=sys.stderr)
            return 2
    env = DrillEnvironment(_drill_options(args))
    stop = threading.Event()
    # SIGTERM and SIGHUP (the terminal went away) must still stop every child cleanly.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (stop.set(), _raise_exit()))
    print(f"x402console: starting the drill environment in {env.state.root} ...", file=sys.stderr)
    try:
        env.start()
    except Exception as exc:
        print(f"x402console: the drill did not start: {exc}", file=sys.stderr)
        return 1
    try:
        if args.headless:
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            _print_components(env)
            stop.wait(args.duration if args.duration > 0 else None)
            return 0
        from x402console.config import load_config

        configure_frame_rate(load_config(env.state.config))
        from x402console.ui.app import run_drill_screen

        # From here the app handles SIGTERM/SIGHUP itself (a clean exit, then env.stop()).
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        return run_drill_screen(env, read_only=args.read_only, role=args.role)
    except SystemExit:
        return 0
    finally:
        env.stop()


def _raise_exit() -> None:
    raise SystemExit(0)


def _print_components(env) -> None:
    print(f"drill {env.drill_id}: config {env.state.config}", flush=True)
    for c in env.components():
        print(f"  {c.name:<16} {c.kind:<10} {c.state:<12} {c.detail}", flush=True)
    for n in env.notes:
        print(f"  note: {n}", flush=True)
    if env.scenario:
        print(f"  scenario {env.scenario.name} arms in {env.opts.scenario_delay:g}s", flush=True)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
