"""HTTPS: each host serves its own self-signed certificate (XA ocaml/gencert/selfcert.ml ``host``:
CN = host name, DNS and IP subjectAltNames, RSA 2048, ten years), so a client trusts a pool with a
bundle of every host's certificate; the gateway's verify_tls / ca_file and its HOST_IS_SLAVE hop
are checked over TLS."""

from __future__ import annotations

import ipaddress
import ssl
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI
from cryptography import x509

from bot.xen.errors import XapiUnavailable
from bot.xen.gateway import PoolGateway
from bot.xen.sim import Simulator
from tests.conftest_xen import pool_settings


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator.start("demo", task_delay_ms=5, event_batch_ms=5, login_failure_delay_ms=0, tls=True) as s:
        yield s


def _gateway(sim: Simulator, url: str, **overrides: object) -> PoolGateway:
    return PoolGateway(pool_settings(sim, url=url, **overrides), retry_delays=(0.01,))


def test_each_host_has_its_own_self_signed_certificate_with_dns_and_ip_sans(sim: Simulator) -> None:
    assert sim.url.startswith("https://") and sim.ca_file is not None
    seen = set()
    for name, url in sim.host_urls.items():
        cert = x509.load_pem_x509_certificate(sim.certificates[name].encode())
        assert cert.subject == cert.issuer  # self-signed, no pool CA
        assert cert.subject.rfc4514_string() == f"CN={name}"
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ip = url.split("//")[1].split(":")[0]
        assert name in sans.get_values_for_type(x509.DNSName)
        assert ipaddress.ip_address(ip) in sans.get_values_for_type(x509.IPAddress)
        assert cert.public_key().key_size == 2048
        served = ssl.get_server_certificate((ip, int(url.rsplit(":", 1)[1].strip("/"))))
        assert served.strip() == sim.certificates[name].strip()
        seen.add(cert.fingerprint(cert.signature_hash_algorithm))  # type: ignore[arg-type]
    assert len(seen) == len(sim.host_urls)


def test_the_stock_client_over_https_with_the_pool_bundle(sim: Simulator) -> None:
    context = ssl.create_default_context(cafile=str(sim.ca_file))
    session = XenAPI.Session(sim.url, transport=xmlrpc.client.SafeTransport(context=context))
    session.xenapi.login_with_password("root", "xenroot", "1.0", "tls")
    assert session.xenapi.VM.get_all()
    member = next(url for url in sim.host_urls.values() if url != sim.url)
    other = XenAPI.Session(member, transport=xmlrpc.client.SafeTransport(context=context))
    with pytest.raises(XenAPI.Failure) as caught:
        other.xenapi.login_with_password("root", "xenroot", "1.0", "tls")
    assert caught.value.details[0] == "HOST_IS_SLAVE"


def test_gateway_follows_host_is_slave_over_tls_with_a_bundle(sim: Simulator) -> None:
    member = next(url for url in sim.host_urls.values() if url != sim.url)
    gw = _gateway(sim, member, ca_file=Path(str(sim.ca_file)))
    try:
        assert gw.inventory().vms
        assert gw.master_url == sim.url
    finally:
        gw.close()


def test_gateway_refuses_an_untrusted_certificate_unless_told_not_to_verify(sim: Simulator) -> None:
    gw = _gateway(sim, sim.url)  # verify_tls, system CAs only
    try:
        with pytest.raises(XapiUnavailable, match="TLS certificate not trusted"):
            gw.check()
    finally:
        gw.close()
    lab = _gateway(sim, sim.url, verify_tls=False)
    try:
        assert lab.check() == sim.url
    finally:
        lab.close()


def test_the_masters_certificate_alone_breaks_at_the_first_hop(sim: Simulator, tmp_path: Path) -> None:
    member = next(url for url in sim.host_urls.values() if url != sim.url)
    master_name = next(name for name, url in sim.host_urls.items() if url == sim.url)
    only_master = tmp_path / "master.pem"
    only_master.write_text(sim.certificates[master_name], encoding="utf-8")
    gw = _gateway(sim, member, ca_file=only_master)  # the member's certificate is not trusted
    try:
        with pytest.raises(XapiUnavailable, match="TLS certificate not trusted"):
            gw.check()
    finally:
        gw.close()


def test_cli_tls_prints_the_bundle_and_serves_https() -> None:
    import re
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", "--tls", "--login-failure-delay-ms", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r'xenbot-sim: serving pool "demo" at (https://127\.0\.0\.1:\d+/) '
                             r"\(user root, password xenroot; CA bundle (\S+)\)\n", line)
        assert match, line
        context = ssl.create_default_context(cafile=match.group(2))
        session = XenAPI.Session(match.group(1), transport=xmlrpc.client.SafeTransport(context=context))
        session.xenapi.login_with_password("root", "xenroot", "1.0", "cli")
        assert len(session.xenapi.host.get_all()) == 3
        session("close")()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not Path(match.group(2)).exists()  # the certificates go with the simulator
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
