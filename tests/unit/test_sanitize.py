"""sanitize_line: nothing that a terminal would act on survives; readable text does."""

from __future__ import annotations

import pytest

from x402console.sources.sanitize import ESC_PLACEHOLDER, sanitize_line

BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def assert_terminal_safe(text: str) -> None:
    for i, ch in enumerate(text):
        code = ord(ch)
        assert code >= 0x20, f"C0 control {code:#x} at {i} in {text!r}"
        assert code != 0x7F, f"DEL at {i} in {text!r}"
        assert not 0x80 <= code <= 0x9F, f"C1 control {code:#x} at {i} in {text!r}"
        assert code not in BIDI, f"bidi control {code:#x} at {i} in {text!r}"
        assert code not in (0x2028, 0x2029), f"line separator at {i} in {text!r}"
        assert not 0xD800 <= code <= 0xDFFF, f"lone surrogate at {i} in {text!r}"
    text.encode("utf-8")  # must be encodable for the terminal


# (name, input, text that must remain visible, text that must be gone)
HOSTILE = [
    ("sgr colour", "\x1b[31mERROR\x1b[0m disk full", "ERROR disk full", "[31m"),
    ("sgr 256 colour", "\x1b[38;5;196mred\x1b[m", "red", "38;5"),
    ("cursor up", "fake\x1b[2Aline", "fake", "[2A"),
    ("cursor position", "x\x1b[10;20Hy", "y", "10;20H"),
    ("erase screen", "before\x1b[2J\x1b[Hafter", "after", "[2J"),
    ("erase line", "keep\x1b[Kme", "keep", "[K"),
    ("private mode alt screen", "a\x1b[?1049hb", "b", "?1049"),
    ("csi unterminated", "tail\x1b[12;", "tail", "[12;"),
    ("8-bit csi", "pre\x9b2Jpost", "post", "2J"),
    ("osc title bel", "\x1b]0;pwned title\x07message", "message", "pwned"),
    ("osc title st", "\x1b]2;pwned\x1b\\message", "message", "pwned"),
    ("osc 8 hyperlink", "\x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\", "click here", "evil.example"),
    ("osc 52 clipboard", "\x1b]52;c;cm0gLXJmIH4K\x07ok", "ok", "cm0gLXJmIH4K"),
    ("osc 8-bit introducer", "\x9d0;title\x9cshown", "shown", "title"),
    ("osc unterminated", "msg \x1b]0;never ends", "msg", "\x1b]"),
    ("dcs", "\x1bP1$r0m\x1b\\after", "after", "$r0m"),
    ("dcs 8-bit", "\x90q#0;2;0;0;0\x9cafter", "after", "#0;2"),
    ("sos", "\x1bXhidden\x1b\\after", "after", "hidden"),
    ("pm", "\x1b^hidden\x1b\\after", "after", "hidden"),
    ("apc", "\x1b_hidden\x1b\\after", "after", "hidden"),
    ("apc unterminated", "\x1b_Gpayload", "Gpayload", "\x1b_"),
    ("reset terminal", "a\x1bcb", "b", "\x1bc"),
    ("save cursor", "a\x1b7b\x1b8c", "c", "\x1b7"),
    ("charset designation", "a\x1b(0lqqk\x1b(B", "lqqk", "\x1b(0"),
    ("dec alignment", "a\x1b#8b", "b", "#8"),
    ("lone esc at end", "text\x1b", "text", "\x1b"),
    ("esc before non-ascii", "a\x1b\u00e9b", "\u00e9b", "\x1b"),
    ("nel c1", "line\x85next", "next", "\x85"),
    ("c1 range", "".join(chr(c) for c in range(0x80, 0xA0)) + "end", "end", "\x9b"),
    ("bell backspace", "a\x07b\x08c", "c", "\x07"),
    ("carriage return overwrite", "good\rEVIL", "EVIL", "\r"),
    ("embedded newline", "one\ntwo", "two", "\n"),
    ("nul", "a\x00b", "b", "\x00"),
    ("del", "a\x7fb", "b", "\x7f"),
    ("all c0", "".join(chr(c) for c in range(0x20) if c != 9) + "end", "end", "\x1b"),
    ("bidi rlo", "file\u202etxt.exe", "txt.exe", "\u202e"),
    ("bidi isolates", "\u2066a\u2067b\u2068c\u2069", "c", "\u2068"),
    ("bidi all overrides", "\u202a\u202b\u202c\u202d\u202ex", "x", "\u202b"),
    ("line separator", "a\u2028b\u2029c", "c", "\u2028"),
    ("lone surrogate", "a\udc9bb\ud800c", "c", "\ud800"),
    ("nested osc in csi", "\x1b[\x1b]0;t\x07x", "x", "\x07"),
]


@pytest.mark.parametrize("name,raw,keep,gone", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_neutralised(name: str, raw: str, keep: str, gone: str) -> None:
    out = sanitize_line(raw)
    assert_terminal_safe(out)
    assert "\x1b" not in out
    assert keep in out
    assert gone not in out


@pytest.mark.parametrize("name,raw,keep,gone", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_as_bytes_is_neutralised(name: str, raw: str, keep: str, gone: str) -> None:
    out = sanitize_line(raw.encode("utf-8", "surrogatepass"))
    assert_terminal_safe(out)
    assert keep in out


def test_non_colour_sequences_leave_a_visible_marker_but_colours_do_not() -> None:
    assert sanitize_line("\x1b[1;31mboom\x1b[0m") == "boom"
    assert sanitize_line("a\x1b[2Jb") == f"a{ESC_PLACEHOLDER}b"
    assert sanitize_line("\x1b]0;title\x07rest") == f"{ESC_PLACEHOLDER}rest"
    assert sanitize_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == f"{ESC_PLACEHOLDER}link{ESC_PLACEHOLDER}"


def test_unterminated_osc_keeps_its_text_inert() -> None:
    assert sanitize_line("\x1b]0;rest of a real message") == f"{ESC_PLACEHOLDER}0;rest of a real message"


def test_c0_controls_become_control_pictures() -> None:
    assert sanitize_line("a\x00b\x07c\x7fd") == "a\u2400b\u2407c\u2421d"
    assert sanitize_line("x\ry") == "x\u240dy"


def test_c1_bidi_and_surrogates_become_escape_text() -> None:
    assert sanitize_line("a\x85b") == "a\\u0085b"
    assert sanitize_line("evil\u202etxt") == "evil\\u202etxt"
    assert sanitize_line("a\udcffb") == "a\\xffb"


def test_tab_expands_to_spaces() -> None:
    assert sanitize_line("a\tb") == "a       b"
    assert sanitize_line("\tx") == " " * 8 + "x"
    assert "\t" not in sanitize_line("k\t\u00e9\tv")


def test_invalid_utf8_becomes_hex_escapes() -> None:
    assert sanitize_line(b"ok \xff\xfe end") == "ok \\xff\\xfe end"
    # a truncated multi-byte sequence
    assert sanitize_line(b"caf\xc3") == "caf\\xc3"
    # raw 8-bit CSI byte is invalid UTF-8 on its own: shown, never interpreted
    out = sanitize_line(b"a\x9b2Jb")
    assert out == "a\\x9b2Jb"
    assert_terminal_safe(out)


def test_valid_utf8_is_preserved() -> None:
    line = "✓ Proof served from cache for 203.0.113.9 — 12.5µs 日本"
    assert sanitize_line(line) == line
    assert sanitize_line(line.encode()) == line


def test_plain_ascii_is_returned_unchanged() -> None:
    line = '[GIN] 2024/05/01 - 12:00:00 | 200 |    1.234567ms |       127.0.0.1 | POST     "/generate-proof"'
    assert sanitize_line(line) == line
    assert sanitize_line(line.encode()) == line


def test_line_terminator_is_removed_not_shown() -> None:
    assert sanitize_line("msg\n") == "msg"
    assert sanitize_line(b"msg\r\n") == "msg"
    assert sanitize_line("msg\n\n") == "msg\u240a"


def test_empty_line() -> None:
    assert sanitize_line("") == ""
    assert sanitize_line(b"") == ""
    assert sanitize_line(b"\n") == ""


def test_one_megabyte_line_is_cut_with_a_marker() -> None:
    raw = b"A" * 1_000_000
    out = sanitize_line(raw)
    assert out == "A" * 2000 + "…[+998000 chars]"


def test_long_hostile_line_is_cut_and_safe() -> None:
    raw = ("\x1b]0;t\x07" + "x" * 50 + "\x9b2J") * 20_000
    out = sanitize_line(raw, max_len=500)
    assert_terminal_safe(out)
    assert out.endswith(" chars]")
    head, _, marker = out.rpartition("…[+")
    assert len(head) == 500
    assert int(marker.split()[0]) > 0


def test_cut_counts_characters_after_sanitising() -> None:
    out = sanitize_line("é" * 30, max_len=10)
    assert out == "é" * 10 + "…[+20 chars]"
    # colour codes do not count towards the limit
    assert sanitize_line("\x1b[31m" + "a" * 10 + "\x1b[0m", max_len=10) == "a" * 10


def test_exact_length_is_not_cut() -> None:
    assert sanitize_line("b" * 2000) == "b" * 2000


def test_rejects_nonsense_arguments() -> None:
    with pytest.raises(ValueError):
        sanitize_line("x", max_len=0)
    with pytest.raises(TypeError):
        sanitize_line(123)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    assert sanitize_line(bytearray(b"a\x1b[2Jb")) == f"a{ESC_PLACEHOLDER}b"
    assert sanitize_line(memoryview(b"plain")) == "plain"
