"""nginx deny file: validation of what the operator types, parsing that keeps the file as it is,
the changes, the addresses that need typed confirmation, and atomic replacement on a real disk."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

import pytest

from x402console.actions import nginx_deny as deny
from x402console.settings.model import DockerHost, NginxSettings, PrometheusSettings, Replica, Settings

net = ipaddress.ip_network


@pytest.mark.parametrize(
    ("typed", "expected", "broad"),
    [
        ("203.0.113.7", "203.0.113.7", False),
        ("  203.0.113.7\n", "203.0.113.7", False),
        ("203.0.113.7/32", "203.0.113.7", False),
        ("198.51.100.0/24", "198.51.100.0/24", False),
        ("2001:db8::1", "2001:db8::1", False),
        ("2001:DB8::/48", "2001:db8::/48", False),
        ("2001:db8::1/128", "2001:db8::1", False),
        ("10.0.0.0/8", "10.0.0.0/8", True),
        ("0.0.0.0/0", "0.0.0.0/0", True),
        ("::/0", "::/0", True),
        ("2001:db8::/31", "2001:db8::/31", True),
    ],
)
def test_valid_addresses_are_normalised(typed: str, expected: str, broad: bool) -> None:
    checked = deny.parse_network(typed)
    assert checked.text == expected
    assert (checked.broad is not None) is broad


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "give the IP address"),
        ("   ", "give the IP address"),
        ("all", "every client"),
        ("ALL", "every client"),
        ("198.51.100.7/24", "has host bits set: the network is 198.51.100.0/24"),
        ("2001:db8::1/32", "the network is 2001:db8::/32"),
        ("203.0.113.256", "is not an IP address"),
        ("203.0.113", "is not an IP address"),
        ("010.0.0.1", "is not an IP address"),
        ("example.com", "is not an IP address"),
        ("203.0.113.7;", "is not one IP address"),
        ("203.0.113.7 198.51.100.1", "is not one IP address"),
        ("203.0.113.0/33", "is not an IP network"),
        ("203.0.113.0/x", "prefix length"),
        ("fe80::1%eth0", "scope id"),
        ("::ffff:203.0.113.7", "block 203.0.113.7"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_bad_input_is_a_clear_error(typed: str, message: str) -> None:
    with pytest.raises(deny.DenyError) as err:
        deny.parse_network(typed)
    assert message in str(err.value)


def test_non_text_is_refused() -> None:
    with pytest.raises(deny.DenyError, match="as text"):
        deny.parse_network(None)  # type: ignore[arg-type]


SAMPLE = (
    "# blocked by hand\n"
    "deny 203.0.113.7;\n"
    "\n"
    "deny 198.51.100.0/24;  # scanner\n"
    "allow 192.0.2.1;\n"
    "deny   2001:db8::/48 ;\n"
    "deny all;\n"
    "deny 192.0.2.9; deny 192.0.2.10;\n"
    "deny 999.1.1.1;\n"
    "include other.conf;"  # no final newline
)


def test_parse_and_render_keep_every_byte() -> None:
    df = deny.DenyFile.parse(SAMPLE)
    assert df.render() == SAMPLE
    crlf = SAMPLE.replace("\n", "\r\n")
    assert deny.DenyFile.parse(crlf).render() == crlf


def test_entries_and_unknown_lines() -> None:
    df = deny.DenyFile.parse(SAMPLE)
    assert [(e.shown, e.line) for e in df.entries()] == [
        ("203.0.113.7", 2), ("198.51.100.0/24", 4), ("2001:db8::/48", 6), ("192.0.2.9", 8), ("192.0.2.10", 8),
    ]
    assert df.entries()[1].comment == "scanner"
    assert [n for n, _ in df.unknown()] == [5, 7, 9, 10]


def test_block_appends_one_line_and_keeps_the_rest() -> None:
    df = deny.DenyFile.parse(SAMPLE)
    new = df.with_block(net("192.0.2.50/32"), "x402console alice@ops\nincident #3").render()
    assert new.startswith(SAMPLE + "\n")  # the missing final newline was added first
    assert new.endswith("deny 192.0.2.50;  # x402console alice@ops incident #3\n")
    assert deny.DenyFile.parse(new).exact(net("192.0.2.50/32"))


def test_block_in_an_empty_file_starts_with_a_header() -> None:
    new = deny.DenyFile.parse("").with_block(net("203.0.113.8/32")).render()
    assert new == deny.HEADER + "deny 203.0.113.8;\n"


def test_unblock_removes_exactly_that_network() -> None:
    df = deny.DenyFile.parse(SAMPLE)
    after, changed = df.without_block(net("198.51.100.0/24"))
    assert changed == [4]
    assert after.render() == SAMPLE.replace("deny 198.51.100.0/24;  # scanner\n", "")
    after, changed = df.without_block(net("192.0.2.9/32"))
    assert changed == [8]
    assert "deny 192.0.2.10;\n" in after.render() and "192.0.2.9;" not in after.render()
    same, changed = df.without_block(net("203.0.113.99/32"))
    assert changed == [] and same.render() == SAMPLE


def test_covering_and_inside() -> None:
    df = deny.DenyFile.parse(SAMPLE)
    assert [e.shown for e in df.covering(net("198.51.100.7/32"))] == ["198.51.100.0/24"]
    assert df.covering(net("198.51.100.0/24")) == []
    assert [e.shown for e in df.inside(net("192.0.2.0/24"))] == ["192.0.2.9", "192.0.2.10"]
    assert df.covering(net("2001:db8::5/128"))[0].shown == "2001:db8::/48"


def test_diff_shows_the_added_line() -> None:
    old = "deny 203.0.113.7;\n"
    new = deny.DenyFile.parse(old).with_block(net("203.0.113.8/32")).render()
    text = deny.diff(old, new, Path("/etc/nginx/blocked_ips.conf"))
    assert "+deny 203.0.113.8;" in text and "-deny" not in text


# --------------------------------------------------------------------------- hazards


async def test_protected_addresses_cover_loopback_ssh_and_configured_services() -> None:
    settings = Settings(
        prometheus=PrometheusSettings(url="http://192.0.2.90:9090"),
        nginx=NginxSettings(url="http://[2001:db8::80]:80"),
        docker_hosts=(DockerHost(name="remote", url="tcp://192.0.2.70:2376"),),
        replicas=(Replica("prover-1", "http://192.0.2.81:8080/health", "http://192.0.2.81:8080/metrics"),),
    )
    protected = await deny.protected_addresses(settings, {"SSH_CONNECTION": "198.51.100.23 50022 192.0.2.5 22"})

    def why(text: str) -> list[str]:
        return deny.hazards(net(text), protected)

    assert "loopback" in why("127.0.0.5")[0]
    assert "IPv6 loopback" in why("::1")
    assert any("your own address" in w for w in why("198.51.100.0/24"))
    assert any("Prometheus" in w for w in why("192.0.2.90"))
    assert any("Docker host remote" in w for w in why("192.0.2.64/28"))
    assert any("prover replica prover-1" in w for w in why("192.0.2.81"))
    assert any("nginx" in w for w in why("2001:db8::/32"))
    assert why("203.0.113.7") == []
    # the whole Internet covers everything above
    assert len(why("0.0.0.0/0")) >= 4


async def test_this_machines_own_addresses_are_protected() -> None:
    own = [a for a in deny.machine_addresses() if not a.is_loopback]
    if not own:
        pytest.skip("this machine has no address besides loopback")
    protected = await deny.protected_addresses(Settings(prometheus=PrometheusSettings(url=None)), {})
    assert any("this machine" in w for w in deny.hazards(ipaddress.ip_network(own[0]), protected))


# --------------------------------------------------------------------------- writing


def test_atomic_write_keeps_mode_and_restore_is_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "blocked_ips.conf"
    original = b"# mine\r\ndeny 203.0.113.7;\n\xff odd byte\n"
    path.write_bytes(original)
    os.chmod(path, 0o640)
    like = path.stat()
    notes = deny.atomic_write(path, b"deny 1.2.3.4;\n", like)
    assert notes == []
    assert path.read_bytes() == b"deny 1.2.3.4;\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != like.st_ino  # replaced, not rewritten in place
    assert deny.restore(path, original, like) is True
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["blocked_ips.conf"]  # no temp file left


def test_restore_of_a_file_that_did_not_exist_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "blocked_ips.conf"
    deny.atomic_write(path, b"deny 1.2.3.4;\n", None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert deny.restore(path, None, None) is True and not path.exists()


async def test_apply_rolls_back_when_the_check_fails(tmp_path: Path) -> None:
    path = tmp_path / "blocked_ips.conf"
    path.write_bytes(b"deny 203.0.113.7;\n")
    check = ["sh", "-c", f"grep -q 198.51.100.1 {path} && echo 'nginx: [emerg] invalid parameter' >&2 && exit 1; exit 0"]
    report = await deny.apply(path, path.read_bytes(), b"deny 203.0.113.7;\ndeny 198.51.100.1;\n", check, ["true"])
    assert not report.ok and report.restored and report.restore_verified
    assert "invalid parameter" in report.failure
    assert report.reload is None  # never reloaded with a file that failed the check
    assert path.read_bytes() == b"deny 203.0.113.7;\n"


async def test_apply_rolls_back_and_reloads_again_when_the_reload_fails(tmp_path: Path) -> None:
    path = tmp_path / "blocked_ips.conf"
    marker = tmp_path / "reloads"
    path.write_bytes(b"")
    reload = ["sh", "-c", f"echo x >> {marker}; grep -q deny {path} && exit 3; exit 0"]
    report = await deny.apply(path, b"", b"deny 203.0.113.9;\n", ["true"], reload)
    assert not report.ok and report.restored
    assert report.reload is not None and report.reload.returncode == 3
    assert report.restore_reload is not None and report.restore_reload.ok
    assert marker.read_text() == "x\nx\n"
    assert path.read_bytes() == b""
    assert "put back and nginx was reloaded with it" in report.failure


async def test_missing_commands_are_results_not_exceptions() -> None:
    result = await deny.run_command(["/nonexistent/nginx", "-t"])
    assert result.returncode == 127 and "command not found" in result.output()


def test_access_log_is_found_from_the_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    log = tmp_path / "logs" / "access.log"
    log.parent.mkdir()
    log.write_text("")
    conf.write_text("http {\n    access_log logs/access.log;\n}\n")
    assert deny.access_log_of(["nginx", "-c", str(conf), "-p", str(tmp_path), "-t"]) == log
