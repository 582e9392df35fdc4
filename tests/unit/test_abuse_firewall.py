"""The firewall commands the block plans show (and run when configured). Nothing here runs
iptables: see tests/integration/test_abuse_firewall_netns.py for that, in a private namespace."""

from __future__ import annotations

import ipaddress

import pytest

from x402console.actions import firewall
from x402console.settings.model import FirewallSettings, Settings


def settings(**kw) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(firewall=FirewallSettings(**kw))


V4 = ipaddress.ip_network("203.0.113.7/32")
V4NET = ipaddress.ip_network("198.51.100.0/24")
V6 = ipaddress.ip_network("2001:db8::/48")


def test_block_inserts_a_drop_rule_at_the_top_of_the_chain() -> None:
    s = settings()
    assert firewall.block_argv(s, V4) == ["iptables", "-I", "INPUT", "-s", "203.0.113.7", "-j", "DROP"]
    assert firewall.unblock_argv(s, V4NET) == ["iptables", "-D", "INPUT", "-s", "198.51.100.0/24", "-j", "DROP"]
    assert firewall.check_argv(s, V4) == ["iptables", "-C", "INPUT", "-s", "203.0.113.7", "-j", "DROP"]
    assert firewall.shown(firewall.block_argv(s, V4)) == "iptables -I INPUT -s 203.0.113.7 -j DROP"


def test_ipv6_goes_to_ip6tables_even_behind_a_wrapper() -> None:
    assert firewall.block_argv(settings(), V6)[0] == "ip6tables"
    wrapped = settings(iptables_command=("sudo", "-n", "/usr/sbin/iptables"), chain="x402-block")
    assert firewall.block_argv(wrapped, V6) == ["sudo", "-n", "/usr/sbin/ip6tables", "-I", "x402-block", "-s",
                                                "2001:db8::/48", "-j", "DROP"]
    assert firewall.list_argv(wrapped, 6) == ["sudo", "-n", "/usr/sbin/ip6tables", "-S", "x402-block"]
    assert firewall.list_argv(wrapped) == ["sudo", "-n", "/usr/sbin/iptables", "-S", "x402-block"]
    assert firewall.block_argv(settings(iptables_command=("iptables-nft",)), V6)[0] == "ip6tables-nft"


def test_ipv6_without_an_iptables_element_is_a_clear_error() -> None:
    with pytest.raises(firewall.FirewallError, match="no ip6tables command"):
        firewall.block_argv(settings(iptables_command=("my-firewall",)), V6)
    assert firewall.block_argv(settings(iptables_command=("my-firewall",)), V4)[0] == "my-firewall"


@pytest.mark.parametrize("chain", ["", "INPUT; rm -rf /", "a" * 29, "IN PUT"])
def test_bad_chain_names_are_refused(chain: str) -> None:
    with pytest.raises(firewall.FirewallError, match="chain"):
        firewall.block_argv(settings(chain=chain), V4)


def test_empty_command_is_refused() -> None:
    with pytest.raises(firewall.FirewallError, match="empty"):
        firewall.block_argv(settings(iptables_command=()), V4)


def test_drop_rules_are_read_from_iptables_s_output() -> None:
    text = ("-P INPUT ACCEPT\n-A INPUT -s 203.0.113.7/32 -j DROP\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"
            "-A FORWARD -s 192.0.2.1/32 -j DROP\n-A INPUT -s 198.51.100.0/24 -j DROP\n")
    assert firewall.parse_drop_rules(text, "INPUT") == ["203.0.113.7/32", "198.51.100.0/24"]
