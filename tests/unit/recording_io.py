"""A stand-in for the datapath's I/O in tests of reloads (dataplane/tables.py)."""


class RecordingIo:
    """Stands where the datapath's I/O goes: records what a reload asks of it."""

    def __init__(self, refuse=()):
        self.calls, self.refuse = [], set(refuse)

    def open(self, port):
        if port.name in self.refuse:
            raise OSError(19, f"port {port.name}: no interface")
        self.calls.append(("open", port.name))
        return [port.name]

    def attach(self, port_id, handles):
        self.calls.append(("attach", handles[0]))

    def detach(self, port_id):
        self.calls.append(("detach", port_id))
