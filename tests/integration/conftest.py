"""Network namespace fixtures: a unique name per test, removed in a
finalizer even when the test fails (like pyroute2's own test fixtures)."""
import pytest

from . import daemon_site, kernel_vtep, vtepd


@pytest.fixture
def namespaces():
    """make(role) -> (name, NetNS): a fresh namespace named vtept<pid>-<n><role>."""
    with vtepd.fresh_namespaces() as make:
        yield make


@pytest.fixture(params=[4, 6], ids=["ipv4-underlay", "ipv6-underlay"])
def lab(request, namespaces):
    """A Linux VTEP in namespace K and a bare veth end in U (kernel_vtep.py)."""
    lab = kernel_vtep.build(request.param, namespaces)
    try:
        yield lab
    finally:
        lab["raw"].close()
        lab["udp"].close()


@pytest.fixture
def site(namespaces):
    """vtepd's site (daemon_site.py): namespaces, veths and the kernel VTEP; vtepd is the test's to start."""
    return daemon_site.build(namespaces)
