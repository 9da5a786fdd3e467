"""vtep: a userspace VXLAN/NVGRE tunnel endpoint with private VLAN isolation.

The fast path is C (csrc/); dataplane._engine (Cython) drives it, and
dataplane.packet (cffi) offers its stateless packet functions."""

__version__ = "0.1.0"
