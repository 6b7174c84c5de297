"""One grammar for hosts everywhere: a job's resources.hosts, --hosts/EASGD_HOSTS, placements."""

from __future__ import annotations

import pytest

from db.errors import EasgdError
from training.schema import ConfigError, parse_config
from training.schema.hosts import HostsError, format_hosts, host_of_rank, local_slots, parse_hosts


def test_parses_what_horovodrun_h_reads_in_order():
    hosts = parse_hosts("h2:4, h1.example.org:2,10.0.0.3:1")
    assert list(hosts.items()) == [("h2", 4), ("h1.example.org", 2), ("10.0.0.3", 1)]
    assert format_hosts(hosts) == "h2:4,h1.example.org:2,10.0.0.3:1"


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("h1", "host:slots"),  # horovodrun requires the slots
        ("h1:", "host:slots"),
        ("h1:0", "1 to 1024 slots"),
        ("h1:1025", "1 to 1024 slots"),
        ("h1:99999999999999999999", "1 to 1024 slots"),
        ("h1:2,h1:2", "named twice"),
        ("a b;rm -rf /:2", "host:slots"),
        ("h1:2,", "host:slots"),
        ("$(id):2", "host:slots"),
        ("h1:-2", "host:slots"),
        (",".join(f"h{i}:1" for i in range(300)), "at most 256 hosts"),
    ],
)
def test_bad_hosts_are_one_line_naming_the_flag(text, phrase):
    with pytest.raises(HostsError) as err:
        parse_hosts(text, "--hosts")
    message = str(err.value)
    assert message.startswith("--hosts: ") and phrase in message and "\n" not in message
    assert isinstance(err.value, EasgdError) and err.value.exit_code == 2


@pytest.mark.parametrize("value", ["0", "-1", "x", "1025", "2.5", ""])
def test_slots_are_an_integer_from_1_to_1024(value):
    with pytest.raises(HostsError, match="EASGD_SLOTS: an integer from 1 to 1024"):
        local_slots(value, "EASGD_SLOTS")
    assert local_slots(" 3 ") == {"localhost": 3}


def test_resources_hosts_is_normalised_and_must_hold_the_workers():
    cfg = parse_config({"resources": {"workers": 3, "hosts": " h1:2 ,h2:1"}})
    assert cfg.resources.hosts == "h1:2,h2:1"
    assert cfg.resources.host_map == {"h1": 2, "h2": 1}
    with pytest.raises(ConfigError) as err:
        parse_config({"resources": {"workers": 4, "hosts": "h1:2,h2:1"}})
    assert err.value.problems == [
        "resources: hosts h1:2,h2:1 give 3 slots, fewer than workers (4); "
        "add slots or lower workers"
    ]


@pytest.mark.parametrize("text", ["-x:2", ".h:1", "h1:2,-H:1"])
def test_a_name_horovodrun_would_read_as_an_option_is_refused(text):
    with pytest.raises(HostsError, match="host:slots"):
        parse_hosts(text, "--hosts")


@pytest.mark.parametrize("value", ["²", "٣", "1e3"])
def test_slots_are_ascii_digits(value):
    with pytest.raises(HostsError, match="an integer from 1 to 1024"):
        local_slots(value, "EASGD_SLOTS")


def test_ranks_fill_each_hosts_slots_in_order_as_horovodrun_places_them():
    hosts = parse_hosts("a:2,b:1,c:3")
    assert [host_of_rank(hosts, r) for r in range(7)] == ["a", "a", "b", "c", "c", "c", None]
