"""Webhook targets (pfd_db.store.notify.webhook_targets): internal addresses and names are
refused at creation and at a URL change (on both dialects, nothing written), and again
when a worker resolves the host to send; only http and https; the allow-list setting."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from sqlalchemy import func, select

from pfd_db.config import get_settings
from pfd_db.errors import ConfigurationError, HostUnresolved, InvalidInput
from pfd_db.models import SystemLog, WebhookConfiguration
from pfd_db.store.identity import users
from pfd_db.store.notify import webhooks
from pfd_db.store.notify.webhook_targets import check_url, is_internal, resolve_target

URL = "https://hooks.example.com/pfd"
FROM_THE_ISSUE = [
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost/hook",
    "http://localhost:8080/hook",
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://10.0.0.5/hook",
    "http://10.255.255.255/hook",
    "http://192.168.1.10/hook",
    "http://172.16.3.4/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://0.0.0.0/hook",
    "http://[fe80::1]/hook",
]
OTHER_SPELLINGS = [
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254, mapped, in hex
    "http://[64:ff9b::a9fe:a9fe]/hook",  # the metadata address through NAT64
    "http://[2002:7f00:1::1]/hook",  # 6to4 around 127.0.0.1
    "http://0177.0.0.1/hook",  # octal
    "http://0x7f.1/hook",  # hex, short form
    "http://127.1/hook",  # short form
    "http://017700000001/hook",  # one octal number
    "http://127.0.0.1./hook",  # trailing dot
    "http://localhost./hook",
    "http://LocalHost/hook",
    "http://api.localhost/hook",
    "http://metadata.google.internal./hook",
    "http://metadata/hook",
    "http://printer.local/hook",
    "http://router.home.arpa/hook",
    "http://100.100.100.200/hook",  # Alibaba's metadata service (shared address space)
    "http://[fd00:ec2::254]/hook",  # AWS's IPv6 metadata service
    "http://224.0.0.1/hook",  # multicast
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook",  # full-width 127.0.0.1 (IDNA)
    "http://user:pw@127.0.0.1/hook",
]
PUBLIC = [
    URL,
    "http://hooks.example.com:8080/pfd?x=1",
    "https://93.184.216.34/hook",
    "https://[2606:4700:4700::1111]/hook",
    "https://hooks.slack.com/services/T000/B000/XXXX",
    "https://bücher.example/hook",
]


@pytest.fixture
def allow(monkeypatch):
    """Set PFD_DB_WEBHOOK_ALLOWED_HOSTS for one test."""

    def change(value: str) -> None:
        monkeypatch.setenv("PFD_DB_WEBHOOK_ALLOWED_HOSTS", value)
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def ada(db):
    user = users.create_user(db, "ada", "ada@example.com", "a long passphrase")
    db.commit()
    return user


def table_counts(db) -> tuple[int, int]:
    return (
        db.scalar(select(func.count()).select_from(WebhookConfiguration)),
        db.scalar(select(func.count()).select_from(SystemLog)),
    )


@pytest.mark.parametrize("url", FROM_THE_ISSUE)
def test_the_issues_internal_targets_are_refused_at_creation(db, ada, url):
    before = table_counts(db)
    with pytest.raises(InvalidInput, match=r"url '.*internal"):
        webhooks.create_webhook(db, ada, url, ["training.complete"])
    assert table_counts(db) == before
    db.rollback()
    assert table_counts(db) == before


@pytest.mark.parametrize("url", OTHER_SPELLINGS)
def test_other_spellings_of_internal_targets_are_refused(url):
    with pytest.raises(InvalidInput, match="internal"):
        check_url(url)


def test_a_refusal_names_the_url_without_its_password():
    with pytest.raises(InvalidInput) as refused:
        check_url("http://ada:hunter2-secret@10.1.2.3:8443/x")
    assert "10.1.2.3" in str(refused.value) and "hunter2-secret" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript://example.com/%0aalert(1)",
        "ws://example.com/hook",
        "//example.com/hook",
        "https:///no-host",
        "http://127.0.0.1\\@example.com/",  # a browser reads the backslash as a slash
        "http://exa mple.com/",
        "http://999.1.1.1/",
        "http://4294967296/",
        "http://example.com:99999/",
        "http://ex..ample.com/",
    ],
)
def test_only_well_formed_http_and_https_urls_are_accepted(url):
    with pytest.raises(InvalidInput, match="url"):
        check_url(url)


@pytest.mark.parametrize("url", PUBLIC)
def test_public_targets_are_accepted_as_given(url):
    assert check_url(url) == url


def test_a_name_is_not_looked_up_at_creation(db, ada, plaintexts):
    """No network is needed to save a webhook: an unknown name is accepted."""
    url = "https://no-such-host.invalid/x"
    config, secret = webhooks.create_webhook(db, ada, url, ["training.started"])
    plaintexts.append(secret)
    assert config.webhook_url == "https://no-such-host.invalid/x"


def test_an_internal_target_is_refused_at_a_url_change(db, ada, plaintexts):
    config, secret = webhooks.create_webhook(db, ada, URL, ["training.complete"])
    plaintexts.append(secret)
    db.commit()
    before = table_counts(db)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/x"):
        with pytest.raises(InvalidInput, match="internal"):
            webhooks.update_webhook(db, config, url=url, name="moved")
        assert table_counts(db) == before
    db.rollback()
    assert (db.get(WebhookConfiguration, config.id).webhook_url, config.name) == (URL, None)
    with pytest.raises(InvalidInput, match="http:// or https://"):
        webhooks.update_webhook(db, config, url="ftp://example.com/x")


def test_resolve_target_returns_the_addresses_of_a_public_host():
    assert resolve_target("https://93.184.216.34:8443/hook") == ["93.184.216.34"]
    assert resolve_target("https://[2606:4700:4700::1111]/") == ["2606:4700:4700::1111"]


def internal_name() -> str:
    """A name this machine resolves (through /etc/hosts) to internal addresses only:
    its own host name, or Debian's ip6-localhost / ip6-loopback entries."""
    tried = {}
    for name in (socket.gethostname(), "ip6-localhost", "ip6-loopback"):
        try:
            found = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
        except OSError:
            found = set()
        if found and all(is_internal(ipaddress.ip_address(a)) for a in found):
            return name
        tried[name] = found
    pytest.fail(f"no name here resolves to internal addresses only (tried {tried}): "
                "add the host name to /etc/hosts")


def test_resolve_target_refuses_a_name_that_resolves_to_an_internal_address():
    name = internal_name()
    url = f"https://{name}:8443/hook"
    assert check_url(url) == url  # a name: accepted when saved
    with pytest.raises(InvalidInput, match=rf"{name} resolves to .*internal"):
        resolve_target(url)


def test_resolve_target_refuses_what_check_url_refuses():
    with pytest.raises(InvalidInput, match="internal"):
        resolve_target("http://0x7f000001/")
    with pytest.raises(InvalidInput, match="http:// or https://"):
        resolve_target("ftp://93.184.216.34/")


def test_a_name_that_does_not_resolve_is_host_unresolved():
    with pytest.raises(HostUnresolved, match=r"no-such-host\.invalid"):
        resolve_target("https://no-such-host.invalid/hook")


def test_the_setting_allows_named_hosts_and_networks(db, ada, allow, plaintexts):
    allow("hooks.corp.internal, 10.20.0.0/16,127.0.0.1")
    for url in (
        "https://hooks.corp.internal/pfd",
        "http://10.20.3.4:8080/pfd",
        "http://[::ffff:10.20.0.9]/pfd",
        "http://127.0.0.1:9000/pfd",
    ):
        config, secret = webhooks.create_webhook(db, ada, url, ["training.complete"])
        plaintexts.append(secret)
        assert config.webhook_url == url
    for url in ("http://10.21.0.1/x", "http://127.0.0.2/x", "http://corp.internal/x"):
        with pytest.raises(InvalidInput, match="internal"):
            check_url(url)
    assert resolve_target("http://127.0.0.1:9000/pfd") == ["127.0.0.1"]


def test_an_allowed_name_may_resolve_to_internal_addresses(allow):
    name = internal_name()
    allow(name.upper() + ".")
    addresses = resolve_target(f"https://{name}/hook")
    assert addresses and all(is_internal(ipaddress.ip_address(a)) for a in addresses)


@pytest.mark.parametrize("value", ["not a host!", "10.0.0.0/33", "a/b"])
def test_a_bad_allow_list_names_the_variable(allow, value):
    with pytest.raises(ConfigurationError, match="PFD_DB_WEBHOOK_ALLOWED_HOSTS"):
        allow(value)
        get_settings()
