"""Circuit checks of runbook Incident 4 (invalid proofs): the verification key against its
trusted copy, and the circuit's own verify and test commands.

The runbook's `diff verification_key.json backup/verification_key.json` answers "do they
differ" with a wall of 77-digit numbers; compare_vk answers which field (vk_delta_2[0][0]) and
how, with both values shortened. Its `npm run verify` and `npm run test:circuit` do not exist in
the real repository (reference/x402-system.md section 7: circuits/package.json has compile,
setup, contribute, export*, powers-of-tau, build-all and test), so the commands are whatever the
configuration names ([circuits] verify_command / test_command); unset, the action says so and
how to set them rather than running something that cannot work.

Read-only: changes_state is False for all three. compare_vk only reads. verify and test run a
command on the console's machine; what that command does is the configuration's promise, and
the contract of these two settings is "checks only, never builds or deploys" (plan warns). So
they are allowed in a read-only console, like the diagnostics, and never count as a change.
Their full output is kept as evidence in `<journal directory>/evidence/circuits/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from x402console.actions.base import (
    Action,
    ActionContext,
    ActionError,
    Outcome,
    Plan,
    PlanStep,
    Progress,
    Target,
)
from x402console.actions.diagnostics import evidence_root, publish_unique, utc_stamp
from x402console.sources.sanitize import sanitize_line

__all__ = [
    "ACTIONS",
    "CompareVerificationKey",
    "RunCircuitTests",
    "VerifyCircuit",
    "VkDifference",
    "circuits_dir",
    "diff_json",
    "short_value",
    "vk_shape_problems",
]

VK_MAX_BYTES = 16 * 1024 * 1024  # a real vk is a few KiB; anything near this is not a vk
SHOWN_DIFFERENCES = 12
KEPT_DIFFERENCES = 500
DEFAULT_TIMEOUT = 300.0
KILL_GRACE = 3.0
DRAIN = 1.0  # seconds to finish reading output after the command exited
TAIL_LINES = 20
LOG_MAX_BYTES = 16 * 1024 * 1024
CHUNK = 65536
# Fields of a circom/snarkjs groth16 verification key (reference section 7).
VK_FIELDS = ("protocol", "curve", "nPublic", "vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "vk_alphabeta_12", "IC")


def circuits_dir(settings: Any, journal: Any = None) -> Path:
    return evidence_root(settings, journal) / "circuits"


def _abs(path: Path | str) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


# --------------------------------------------------------------------------- JSON diff (pure)


@dataclass(frozen=True)
class VkDifference:
    path: str  # nPublic, vk_delta_2[0][0], IC[3][1]; "$" is the whole document
    kind: str  # changed | type changed | only in current | only in trusted
    current: str | None  # shortened value; None when absent
    trusted: str | None

    def text(self) -> str:
        if self.kind == "only in current":
            return f"{self.path}: only in the current key ({self.current})"
        if self.kind == "only in trusted":
            return f"{self.path}: missing from the current key (trusted: {self.trusted})"
        return f"{self.path}: {self.current} (trusted: {self.trusted})"


def short_value(value: Any, width: int = 24) -> str:
    """A value shown in little room: containers by size, long text as head…tail with its length."""
    if isinstance(value, dict):
        return f"{{{len(value)} key{'s' if len(value) != 1 else ''}}}"
    if isinstance(value, list):
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    text = json.dumps(value, ensure_ascii=False)
    text = sanitize_line(text, max_len=max(width * 4, 64))
    if len(text) <= width:
        return text
    keep = max(4, (width - 1) // 2)
    body = text[1:-1] if isinstance(value, str) else text
    quote = '"' if isinstance(value, str) else ""
    return f"{quote}{body[:keep]}…{body[-keep:]}{quote} ({len(body)} chars)"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{'' if path == '$' else path}[{key}]"
    if _IDENT.match(key):
        return key if path == "$" else f"{path}.{key}"
    return f"{'' if path == '$' else path}[{json.dumps(key, ensure_ascii=False)}]"


def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def diff_json(current: Any, trusted: Any, path: str = "$", width: int = 24) -> list[VkDifference]:
    """Every leaf where two decoded JSON documents differ, in the trusted document's order
    (keys only the current one has come after). Lists are compared index by index; extra
    entries on either side are reported one by one."""
    out: list[VkDifference] = []
    _diff(current, trusted, path, width, out)
    return out


def _diff(cur: Any, tru: Any, path: str, width: int, out: list[VkDifference]) -> None:
    if isinstance(cur, dict) and isinstance(tru, dict):
        for k in tru:
            if k in cur:
                _diff(cur[k], tru[k], _child(path, k), width, out)
            else:
                out.append(VkDifference(_child(path, k), "only in trusted", None, short_value(tru[k], width)))
        for k in cur:
            if k not in tru:
                out.append(VkDifference(_child(path, k), "only in current", short_value(cur[k], width), None))
        return
    if isinstance(cur, list) and isinstance(tru, list):
        for i in range(max(len(cur), len(tru))):
            if i >= len(cur):
                out.append(VkDifference(_child(path, i), "only in trusted", None, short_value(tru[i], width)))
            elif i >= len(tru):
                out.append(VkDifference(_child(path, i), "only in current", short_value(cur[i], width), None))
            else:
                _diff(cur[i], tru[i], _child(path, i), width, out)
        return
    if _kind_of(cur) != _kind_of(tru):
        out.append(VkDifference(path, "type changed", short_value(cur, width), short_value(tru, width)))
    elif cur != tru:
        out.append(VkDifference(path, "changed", short_value(cur, width), short_value(tru, width)))


def vk_shape_problems(vk: Any) -> list[str]:
    """What makes a decoded document not a groth16 verification key of the expected shape."""
    if not isinstance(vk, dict):
        return [f"not a JSON object (a {_kind_of(vk)})"]
    problems = [f"no {f}" for f in VK_FIELDS if f not in vk]
    n, ic = vk.get("nPublic"), vk.get("IC")
    if "IC" in vk and not isinstance(ic, list):
        problems.append("IC is not a list")
    elif isinstance(ic, list) and isinstance(n, int) and not isinstance(n, bool) and len(ic) != n + 1:
        problems.append(f"IC has {len(ic)} entries, nPublic {n} needs {n + 1}")
    return problems


# --------------------------------------------------------------------------- reading key files


class _Unusable(Exception):
    """A key file that cannot be compared; the message is for the operator."""


def _read_key(path: Path, what: str, setting: str) -> tuple[bytes, Any]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _Unusable(f"{what} not found: {path} ([circuits] {setting})") from None
    except OSError as exc:
        raise _Unusable(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise _Unusable(f"{what} {path} is not a regular file")
    if st.st_size > VK_MAX_BYTES:
        raise _Unusable(f"{what} {path} is {st.st_size} bytes: too large to be a verification key")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Unusable(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Unusable(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _Unusable(f"{what} {path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return data, doc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CompareVerificationKey(Action):
    id: ClassVar[str] = "circuits.compare_vk"
    key: ClassVar[str] = "k"
    title: ClassVar[str] = "Compare the verification key with its trusted copy"
    help: ClassVar[str] = ("sha256 of [circuits] verification_key against trusted_verification_key and, when they "
                           "differ, which fields (runbook Incident 4: diff verification_key.json "
                           "backup/verification_key.json). Read-only.")
    pane: ClassVar[str] = "circuits"
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    target_kind: ClassVar[str] = "file"

    def targets(self, ctx: ActionContext) -> list[Target]:
        c = ctx.settings.circuits
        return [Target("file", str(_abs(c.verification_key)), {"trusted": str(_abs(c.trusted_verification_key))})]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        if not target.name:
            raise ActionError("no verification key is configured ([circuits] verification_key)")
        current = _abs(target.name)
        trusted_raw = (target.detail or {}).get("trusted") or ctx.settings.circuits.trusted_verification_key
        if not str(trusted_raw):
            raise ActionError("no trusted copy is configured ([circuits] trusted_verification_key)")
        trusted = _abs(trusted_raw)
        if current == trusted:
            raise ActionError(f"the verification key and its trusted copy are the same file ({current})")
        warnings = []
        for p, what, setting in ((current, "the verification key", "verification_key"),
                                 (trusted, "the trusted copy", "trusted_verification_key")):
            if not p.exists():
                warnings.append(f"{what} does not exist now: {p} ([circuits] {setting})")
        return self.make_plan(target, [
            PlanStep("Hash both files", f"sha256sum {shlex.quote(str(current))} {shlex.quote(str(trusted))}"),
            PlanStep("If the hashes differ, compare the keys field by field",
                     f"diff {shlex.quote(str(current))} {shlex.quote(str(trusted))}"),
        ], {"current": str(current), "trusted": str(trusted)}, warnings=tuple(warnings))

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        current, trusted = Path(plan.params["current"]), Path(plan.params["trusted"])
        yield Progress(f"reading {current.name} and the trusted copy ...")
        try:
            cur_bytes, cur = await asyncio.to_thread(_read_key, current, "verification key", "verification_key")
            tru_bytes, tru = await asyncio.to_thread(_read_key, trusted, "trusted copy", "trusted_verification_key")
        except _Unusable as exc:
            yield Outcome("failed", str(exc), {"current": str(current), "trusted": str(trusted)})
            return
        cur_sha, tru_sha = _sha(cur_bytes), _sha(tru_bytes)
        details: dict[str, Any] = {"current": str(current), "trusted": str(trusted),
                                   "current_sha256": cur_sha, "trusted_sha256": tru_sha}
        shape = [f"current key: {p}" for p in vk_shape_problems(cur)] + [f"trusted copy: {p}" for p in vk_shape_problems(tru)]
        if shape:
            details["shape_problems"] = shape
        if cur_sha == tru_sha:
            note = f"; but {'; '.join(shape)}" if shape else ""
            yield Outcome("succeeded" if not shape else "failed",
                          f"verification key matches the trusted copy (sha256 {cur_sha[:16]}…){note}", details)
            return
        diffs = diff_json(cur, tru)
        details["differences_total"] = len(diffs)
        details["differences"] = [d.__dict__ for d in diffs[:KEPT_DIFFERENCES]]
        if not diffs:
            yield Outcome("succeeded", f"same key, different bytes: the files differ only in formatting "
                          f"(sha256 {cur_sha[:12]}… vs {tru_sha[:12]}…); every field is equal", details)
            return
        shown = "\n".join(d.text() for d in diffs[:SHOWN_DIFFERENCES])
        more = f"\n… and {len(diffs) - SHOWN_DIFFERENCES} more" if len(diffs) > SHOWN_DIFFERENCES else ""
        fields = sorted({re.split(r"[.\[]", d.path, maxsplit=1)[0] or d.path for d in diffs})
        shape_text = ("\n" + "\n".join(shape)) if shape else ""
        yield Outcome("failed",
                      f"verification key differs from the trusted copy: {len(diffs)} value{'s' if len(diffs) != 1 else ''} "
                      f"in {', '.join(fields)} (sha256 {cur_sha[:12]}… vs trusted {tru_sha[:12]}…)\n{shown}{more}{shape_text}",
                      details)


# --------------------------------------------------------------------------- verify / test commands


RUNBOOK_COMMANDS = {
    "verify": ("npm run verify", "verify_command",
               'e.g. verify_command = ["npx", "snarkjs", "zkey", "verify", "build/payment_proof.r1cs", '
               '"pot12_final.ptau", "build/payment_proof_final.zkey"]'),
    "test": ("npm run test:circuit", "test_command",
             'e.g. test_command = ["npm", "test"] (circuits/package.json: mocha test/test_circuit.js)'),
}


def _not_configured(kind: str) -> str:
    runbook, setting, example = RUNBOOK_COMMANDS[kind]
    return (f"[circuits] {setting} is not configured. The runbook's `{runbook}` does not exist in the real "
            f"repository (circuits/package.json defines compile, setup, contribute, export, export-solidity, "
            f"export-rust, powers-of-tau, build-all and test). Set the command that really checks the circuit "
            f"in config.toml under [circuits], as a list of arguments run in [circuits] workdir: {example}.")


def _resolve_program(argv0: str, workdir: Path) -> str | None:
    if "/" in argv0:
        p = Path(argv0) if os.path.isabs(argv0) else workdir / argv0
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    return shutil.which(argv0)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class _LogFile:
    """The command's whole output, kept as evidence (bounded)."""

    def __init__(self, directory: Path, stem: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.stem = stem
        self.tmp = directory / f".{stem}.{os.getpid()}.partial"
        self.fh = open(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8")
        self.written = 0
        self.truncated = False

    def write(self, line: str) -> None:
        if self.truncated:
            return
        if self.written + len(line) + 1 > LOG_MAX_BYTES:
            self.fh.write(f"[output beyond {LOG_MAX_BYTES // (1024 * 1024)} MiB not kept]\n")
            self.truncated = True
            return
        self.fh.write(line + "\n")
        self.written += len(line) + 1

    def close(self) -> Path:
        self.fh.close()
        return publish_unique(self.tmp, self.directory, self.stem, ".log")

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


class _CommandAction(Action):
    pane: ClassVar[str] = "circuits"
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    target_kind: ClassVar[str] = "environment"
    kind: ClassVar[str] = "verify"
    param_help: ClassVar[Mapping[str, str]] = {"timeout": f"seconds before the command is stopped (default {DEFAULT_TIMEOUT:g})"}

    def _argv(self, ctx: ActionContext) -> tuple[str, ...]:
        return tuple(getattr(ctx.settings.circuits, RUNBOOK_COMMANDS[self.kind][1]))

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [Target("environment", str(_abs(ctx.settings.circuits.workdir)))]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        argv = self._argv(ctx)
        if not argv:
            raise ActionError(_not_configured(self.kind))
        raw = params.get("timeout", DEFAULT_TIMEOUT)
        try:
            timeout = float(raw)
        except (TypeError, ValueError):
            raise ActionError(f"timeout must be a number of seconds, got {raw!r}") from None
        if isinstance(raw, bool) or not 0.1 <= timeout <= 24 * 3600:
            raise ActionError(f"timeout must be between 0.1 and 86400 seconds, got {raw!r}")
        workdir = _abs(ctx.settings.circuits.workdir)
        if target.name and _abs(target.name) != workdir:
            raise ActionError(f"{self.id} runs in [circuits] workdir {workdir}, not in {target.name}")
        if not workdir.is_dir():
            raise ActionError(f"the circuits directory {workdir} does not exist ([circuits] workdir)")
        program = _resolve_program(argv[0], workdir)
        if program is None:
            raise ActionError(f"cannot run [circuits] {RUNBOOK_COMMANDS[self.kind][1]}: no program {argv[0]!r} "
                              f"(not on PATH, or not executable)")
        shown = shlex.join(argv)
        log_dir = circuits_dir(ctx.settings, ctx.journal)
        return self.make_plan(target, [
            PlanStep(f"Run the configured {self.kind} command in {workdir}, output shown line by line; "
                     f"stopped after {timeout:g} s", f"cd {shlex.quote(str(workdir))} && {shown}"),
            PlanStep(f"Keep the whole output in {log_dir}"),
        ], {"argv": list(argv), "workdir": str(workdir), "timeout": timeout, "log_dir": str(log_dir)},
            warnings=("Runs a command on this machine; the console treats it as read-only because "
                      f"[circuits] {RUNBOOK_COMMANDS[self.kind][1]} must only check, never build or deploy.",))

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        argv = list(plan.params["argv"])
        workdir = plan.params["workdir"]
        timeout = float(plan.params["timeout"])
        full = shlex.join(argv)
        shown = full if len(full) <= 80 else full[:77] + "..."
        max_len = int(ctx.settings.ui.max_line_length)
        if ctx.cancel.is_set():
            yield Outcome("cancelled", f"{shown} cancelled before it started")
            return
        try:
            log = await asyncio.to_thread(_LogFile, Path(plan.params["log_dir"]), f"{self.kind}-{utc_stamp()}")
        except OSError as exc:
            yield Outcome("failed", f"cannot keep the output in {plan.params['log_dir']}: {exc.strerror or exc}; not run")
            return
        log.write(f"$ cd {shlex.quote(workdir)} && {full}")
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=workdir, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            log.discard()
            yield Outcome("failed", f"cannot start {full}: {exc.strerror or exc}", {"argv": argv})
            return
        yield Progress(f"$ {full}   (pid {proc.pid})")
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        lines = 0
        ended = "exited"  # exited | cancelled | timeout
        reader = _LineReader(proc.stdout, max_len)  # type: ignore[arg-type]
        deadline = started + timeout
        stop = asyncio.ensure_future(ctx.cancel.wait())
        exited = asyncio.ensure_future(_exit_of(proc))
        try:
            while True:
                next_line = asyncio.ensure_future(reader.next())
                while True:
                    # Once the command has exited, output still buffered is read; a background
                    # child that keeps the pipe open is not waited for beyond DRAIN seconds.
                    waiting = {next_line, stop} if exited.done() else {next_line, stop, exited}
                    budget = deadline - time.monotonic()
                    if exited.done():
                        budget = min(budget, DRAIN)
                    done, _ = await asyncio.wait(waiting, timeout=max(0.0, budget), return_when=asyncio.FIRST_COMPLETED)
                    if exited in done and not (next_line.done() or stop.done()):
                        continue
                    break
                if stop.done() or not next_line.done():
                    next_line.cancel()
                    await asyncio.gather(next_line, return_exceptions=True)
                    if stop.done():
                        ended = "cancelled"
                    elif not exited.done():
                        ended = "timeout"
                    break
                line = next_line.result()
                if line is None:
                    break
                lines += 1
                tail.append(line)
                log.write(line)
                yield Progress(line)
            if ended != "exited":
                await _stop_group(proc)
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(exited), timeout=max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    ended = "timeout"
                    await _stop_group(proc)
            # Whatever the command left running in its group (a background child) goes too.
            if _group_alive(proc.pid):
                _signal_group(proc.pid, signal.SIGKILL)
        except BaseException:
            # The console stopped waiting (quit, task cancelled): the command goes too, and
            # the output so far is kept like any other run's.
            await _stop_group(proc)
            with contextlib.suppress(Exception):
                log.write(f"[interrupted: the console stopped waiting after {time.monotonic() - started:.1f} s]")
                log.close()
            raise
        finally:
            stop.cancel()
            if not exited.done():
                exited.cancel()
        seconds = round(time.monotonic() - started, 3)
        code = proc.returncode
        log.write(f"[{ended}: exit code {code} after {seconds:.1f} s]")
        try:
            log_path: Path | None = await asyncio.to_thread(log.close)
        except OSError:
            log_path = None
        details = {"argv": argv, "workdir": workdir, "exit_code": code, "seconds": seconds, "lines": lines,
                   "tail": list(tail), "pid": proc.pid, "log": str(log_path) if log_path else None}
        artifacts = (str(log_path),) if log_path else ()
        last = f"; last line: {tail[-1]}" if tail else ""
        if ended == "cancelled":
            yield Outcome("cancelled", f"{shown} cancelled after {seconds:.1f} s (process group stopped)", details, artifacts)
        elif ended == "timeout":
            yield Outcome("failed", f"{shown} timed out after {timeout:g} s and was stopped{last}", details, artifacts)
        elif code == 0:
            yield Outcome("succeeded", f"{shown} passed (exit code 0, {lines} lines, {seconds:.1f} s){last}", details, artifacts)
        elif code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            yield Outcome("failed", f"{shown} was killed by {name}{last}", details, artifacts)
        else:
            yield Outcome("failed", f"{shown} failed with exit code {code}{last}", details, artifacts)


async def _exit_of(proc: asyncio.subprocess.Process) -> int:
    """The exit code as soon as the process has exited. Process.wait() on Python 3.11 also waits
    for its pipes to close, which a background child holding stdout can put off for ever."""
    while proc.returncode is None:
        await asyncio.sleep(0.05)
    return proc.returncode


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, SIGKILL it if it is still there after a grace."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(_exit_of(proc), timeout=KILL_GRACE)
        except asyncio.TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_exit_of(proc), timeout=KILL_GRACE)
    if _group_alive(proc.pid):
        _signal_group(proc.pid, signal.SIGKILL)


class _LineReader:
    """Sanitised lines from a stream; a line with no end in sight is cut at CHUNK bytes so
    one endless line (a progress bar with \\r) cannot hold the output back or fill memory."""

    def __init__(self, stream: asyncio.StreamReader, max_len: int) -> None:
        self.stream = stream
        self.max_len = max_len
        self.buffer = bytearray()
        self.eof = False

    async def next(self) -> str | None:
        while True:
            nl = self.buffer.find(b"\n")
            if nl >= 0:
                raw = bytes(self.buffer[: nl + 1])
                del self.buffer[: nl + 1]
                return sanitize_line(raw, self.max_len)
            if len(self.buffer) >= CHUNK or (self.eof and self.buffer):
                raw = bytes(self.buffer[:CHUNK])
                del self.buffer[:CHUNK]
                return sanitize_line(raw, self.max_len)
            if self.eof:
                return None
            chunk = await self.stream.read(CHUNK)
            if not chunk:
                self.eof = True
            else:
                self.buffer += chunk


class VerifyCircuit(_CommandAction):
    id: ClassVar[str] = "circuits.verify"
    key: ClassVar[str] = "v"
    title: ClassVar[str] = "Verify circuit integrity"
    help: ClassVar[str] = ("Run [circuits] verify_command in [circuits] workdir, output line by line (runbook "
                           "Incident 4 `npm run verify`, which does not exist in the real repository). Read-only.")
    kind: ClassVar[str] = "verify"


class RunCircuitTests(_CommandAction):
    id: ClassVar[str] = "circuits.test"
    key: ClassVar[str] = "t"
    title: ClassVar[str] = "Test proof generation with known inputs"
    help: ClassVar[str] = ("Run [circuits] test_command in [circuits] workdir, output line by line (runbook "
                           "Incident 4 `npm run test:circuit`; the real script is `npm test`). Read-only.")
    kind: ClassVar[str] = "test"


ACTIONS = (CompareVerificationKey, VerifyCircuit, RunCircuitTests)


def actions() -> list[Action]:
    return [cls() for cls in ACTIONS]
