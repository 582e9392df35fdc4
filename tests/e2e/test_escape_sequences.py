"""Hostile log lines never reach the terminal: the console in tmux, tailing a drill's log file.

A prover under attack logs attacker-chosen text. Here such lines are appended to a real drill
replica's log file while the console (`x402console drill`) runs in a private tmux server that
WOULD act on a leak: `set-clipboard on` turns an OSC 52 into a paste buffer and OSC 0/2 set the
pane title. Positive controls in a second window prove the server honours both, so a clean
result means the console neutralised the sequences, not that tmux ignored them.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.rig.tmux import Tmux, console_argv, quit_console, stop_leftovers, tmux_factory  # noqa: F401  (fixture)

pytestmark = [pytest.mark.tmux, pytest.mark.slow]

CONSOLE = console_argv()
STOLEN = b"STOLEN-CLIPBOARD-SECRET"
STOLEN_B64 = base64.b64encode(STOLEN)

# (bytes appended to the log file, text the log pane must show for it)
HOSTILE: list[tuple[bytes, str]] = [
    (b"HOSTILE-01 title \x1b]0;PWNED-TITLE\x07 end", "HOSTILE-01 title \u241b end"),
    (b"HOSTILE-02 title \x1b]2;PWNED-TITLE\x1b\\ end", "HOSTILE-02 title \u241b end"),
    (b"HOSTILE-03 clip \x1b]52;c;" + STOLEN_B64 + b"\x07 end", "HOSTILE-03 clip \u241b end"),
    (b"HOSTILE-04 \x1b]8;;https://evil.example/x\x1b\\click\x1b]8;;\x1b\\ end", "HOSTILE-04 \u241bclick\u241b end"),
    (b"HOSTILE-05 \x1b[31;5;8mHIDDEN\x1b[0m end", "HOSTILE-05 HIDDEN end"),
    (b"HOSTILE-06 \x1b[2J\x1b[H\x1b[1;1HFORGED\x1b[K end", "HOSTILE-06 \u241b\u241b\u241bFORGED\u241b end"),
    (b"HOSTILE-07 \x1bP+q544e\x1b\\ end", "HOSTILE-07 \u241b end"),
    (b"HOSTILE-08 csi8 \xc2\x9b2J end", "HOSTILE-08 csi8 \u241b end"),
    (b"HOSTILE-09 raw \x9b2J end", "HOSTILE-09 raw \\x9b2J end"),
    ("HOSTILE-10 \u202eRTL\u202c end".encode(), "HOSTILE-10 \\u202eRTL\\u202c end"),
    (b"HOSTILE-11 bad \xff\xfe end", "HOSTILE-11 bad \\xff\\xfe end"),
    (b"HOSTILE-12 reset \x1bc bell \x07 end", "HOSTILE-12 reset \u241b bell \u2407 end"),
]

# What must never appear in the terminal's cells or attributes (capture-pane -e).
FORBIDDEN = [
    ("OSC introducer", "\x1b]"),
    ("DCS introducer", "\x1bP"),
    ("8-bit CSI", "\x9b"),
    ("bidi override", "\u202e"),
    ("title payload", "PWNED"),
    ("clipboard payload (base64)", STOLEN_B64.decode()),
    ("clipboard payload", STOLEN.decode()),
    ("hyperlink target", "evil.example"),
    ("XTGETTCAP request", "+q544e"),
]

SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def sgr_attributes(text: str) -> set[int]:
    """The plain SGR attributes (bold, blink, conceal...) used anywhere, colour arguments skipped."""
    found: set[int] = set()
    for match in SGR.finditer(text):
        params = [p for p in re.split("[;]", match.group(1)) if p != ""]
        i = 0
        while i < len(params):
            head = params[i].split(":")[0]
            value = int(head) if head.isdigit() else 0
            if value in (38, 48, 58) and ":" not in params[i]:
                # 38;5;N or 38;2;R;G;B: the arguments are colours, not attributes
                i += 3 if i + 1 < len(params) and params[i + 1] == "5" else 5
                continue
            if value not in (38, 48, 58) and not 30 <= value <= 49 and not 90 <= value <= 107:
                found.add(value)
            i += 1
    return found


@pytest.fixture
def hostile_console(tmux_factory, tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:  # noqa: F811
    state = (tmp_path / "drill").resolve()
    tmux = tmux_factory(width=160, height=45, options={"set-clipboard": "on"})
    tmux.start([*CONSOLE, "drill", "--state-dir", str(state), "--port", "0", "--prometheus", "off",
                "--nginx", "off", "--rate", "2", "--replicas", "2"])
    try:
        yield tmux, state
    finally:
        quit_console(tmux, state)
        tmux.kill()
        stop_leftovers(state)


def test_hostile_log_lines_are_neutralised_before_the_terminal(hostile_console) -> None:
    tmux, state = hostile_console
    tmux.wait_for(lambda s: re.search(r"prover-1 \d\d:\d\d:\d\d ", s) is not None, 60,
                  "log lines from prover-1 in the log pane")
    title_before = tmux.pane_title()

    # Positive controls: this tmux server does act on these sequences when a program emits them.
    control = tmux.new_window(["sh", "-c", "printf '\\033]2;CONTROL-TITLE\\007'; "
                               f"printf '\\033]52;c;{base64.b64encode(b'CLIP-CONTROL').decode()}\\007'; "
                               "sleep 60"])
    tmux.wait_for(lambda _: tmux.pane_title(control) == "CONTROL-TITLE", 10, "the control title", target=control)
    assert any("CLIP-CONTROL" in b for b in tmux.buffers()), "set-clipboard on must turn OSC 52 into a buffer"

    log = state / "logs" / "prover-1.log"
    with open(log, "ab") as f:  # O_APPEND, one write per line: never interleaved with the prover's
        for raw, _ in HOSTILE:
            f.write(raw + b"\n")

    # Only the hostile lines, so traffic cannot scroll them away: focus logs, filter. Textual
    # applies a focus change on its next turn, so each key waits for the previous one to land.
    tmux.send_keys("3")
    time.sleep(0.5)
    tmux.send_keys("/")
    time.sleep(0.5)
    tmux.send_keys("HOSTILE-", literal=True)
    tmux.wait_for(lambda s: "text 'HOSTILE-'" in s, 10, "the filter to be applied")
    tmux.send_keys("Enter")
    screen = tmux.wait_for(lambda s: all(f"HOSTILE-{i:02d}" in s for i in range(1, len(HOSTILE) + 1)), 30,
                           "every hostile line in the filtered log pane")

    for _, shown in HOSTILE:
        assert shown in screen, f"log pane should show {shown!r}"

    lines = screen.splitlines()
    assert len(lines) == tmux.height
    assert "x402console" in lines[0] and "FORGED" not in lines[0], "the header must still be the top line"
    assert not lines[0].startswith("FORGED")
    for title in ("1 Service health", "2 Metrics", "3 Logs", "4 Checklist"):
        assert title in screen, f"layout broken: pane {title!r} not on screen"

    with_escapes = tmux.capture(escapes=True)
    for what, needle in FORBIDDEN:
        assert needle not in with_escapes, f"{what} reached the terminal"
    attributes = sgr_attributes(with_escapes)
    assert 5 not in attributes and 6 not in attributes, "injected blink reached the terminal"
    assert 8 not in attributes, "injected conceal (hidden text) reached the terminal"

    assert "PWNED" not in tmux.pane_title()
    assert tmux.pane_title() == title_before
    assert not any(STOLEN.decode() in b for b in tmux.buffers()), "OSC 52 from a log line set the clipboard"
    assert not tmux.pane_dead(), "the console exited"
