"""The service's addresses: a URL built from a host must be a URL for every kind of host."""

from __future__ import annotations

import pytest

from service.settings import ServiceSettings, SettingsError, http_url
from training.launch.argv import horovodrun_argv


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8765"),
        ("localhost", "http://localhost:8765"),
        ("::1", "http://[::1]:8765"),
        ("[::1]", "http://[::1]:8765"),
        ("fe80::1%lo", "http://[fe80::1%25lo]:8765"),
    ],
)
def test_urls_put_ipv6_literals_in_brackets(host, url):
    assert http_url(host, 8765) == url


@pytest.mark.parametrize(
    ("host", "url", "local"),
    [
        ("::1", "http://[::1]:9000", "http://[::1]:9000"),
        ("::", "http://[::]:9000", "http://[::1]:9000"),
        ("0.0.0.0", "http://0.0.0.0:9000", "http://127.0.0.1:9000"),
    ],
)
def test_the_service_knows_its_own_url_and_how_to_reach_it_locally(host, url, local):
    s = ServiceSettings(host=host, port=9000)
    assert (s.url, s.local_url) == (url, local)


def test_across_hosts_the_ssh_options_reach_horovodrun_and_the_reachability_check(
    tmp_path, monkeypatch
):
    key = tmp_path / "id_ed25519"
    key.write_text("a private key")
    monkeypatch.setenv("EASGD_SSH_PORT", "2222")
    s = ServiceSettings.from_env(network_interface="eth1,ib0", ssh_identity_file=str(key))
    assert (s.network_interface, s.ssh_port, s.ssh_identity_file) == ("eth1,ib0", 2222, str(key))
    assert s.ssh_options == ["-p", "2222", "-i", str(key)]
    argv = horovodrun_argv(
        2,
        ["prog"],
        {"h1": 1, "h2": 1},
        network_interface=s.network_interface,
        ssh_port=s.ssh_port,
        ssh_identity_file=s.ssh_identity_file,
    )
    assert argv[-7:] == [
        "--network-interface", "eth1,ib0", "--ssh-port", "2222", "--ssh-identity-file", str(key),
        "prog",
    ]  # fmt: skip
    local = horovodrun_argv(2, ["prog"], ssh_port=2222, ssh_identity_file=str(key))
    assert "--ssh-port" not in local and local[-3:] == ["--network-interface", "lo", "prog"]


@pytest.mark.parametrize(
    "field, value, phrase",
    [
        ("network_interface", "eth0;reboot", "--network-interface (EASGD_NETWORK_INTERFACE): "),
        ("network_interface", "x" * 16, "at most 15 characters"),
        ("network_interface", "", "network interface names"),
        ("ssh_port", "0", "--ssh-port (EASGD_SSH_PORT): a port from 1 to 65535"),
        ("ssh_port", "65536", "a port from 1 to 65535 (received: '65536')"),
        ("ssh_port", "1e3", "a port from 1 to 65535"),
        ("ssh_identity_file", "/nowhere/key", "--ssh-identity-file (EASGD_SSH_IDENTITY_FILE): not"),
    ],
)
def test_bad_ssh_settings_are_one_line_naming_the_flag(field, value, phrase):
    with pytest.raises(SettingsError) as err:
        ServiceSettings.from_env(**{field: value})
    assert phrase in str(err.value) and "\n" not in str(err.value)
