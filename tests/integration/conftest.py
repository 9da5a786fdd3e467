"""Network namespace fixtures: a unique name per test, removed in a
finalizer even when the test fails (like pyroute2's own test fixtures)."""
import itertools
import os

import pytest
from pyroute2 import NetNS, netns

_serial = itertools.count()


@pytest.fixture
def namespaces():
    """make(role) -> (name, NetNS): a fresh namespace named vtept<pid>-<n><role>."""
    made = []

    def make(role):
        name = f"vtept{os.getpid()}-{next(_serial)}{role}"
        made.append((name, NetNS(name, flags=os.O_CREAT)))
        return made[-1]

    try:
        yield make
    finally:
        for name, ns in made:
            ns.close()
            try:
                netns.remove(name)
            except OSError:
                pass
