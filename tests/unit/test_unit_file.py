"""systemd/vtepd.service: systemd itself checks the file where
systemd-analyze exists; its keys are always checked by parsing it."""
import configparser
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

UNIT = pathlib.Path(__file__).resolve().parents[2] / "systemd" / "vtepd.service"
EXEC = "/usr/local/bin/vtepd"


def parse():
    # systemd allows a key more than once (strict=False keeps the last one, which is
    # enough here); keys are case sensitive.
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def test_keys():
    unit = parse()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"] == f"{EXEC} -c /etc/vtepd/vtepd.toml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["RuntimeDirectory"] == "vtepd"
    assert service["Restart"] == "on-failure"
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] in ("strict", "full", "yes")
    assert service["ProtectHome"] in ("yes", "read-only", "tmpfs")
    assert service["PrivateTmp"] == "yes"
    # /dev/net/tun stays usable: no PrivateDevices, and allowed when devices are restricted.
    assert service.get("PrivateDevices", "no") == "no"
    if service.get("DevicePolicy", "auto") != "auto":
        assert "/dev/net/tun rw" in service["DeviceAllow"]
    families = service.get("RestrictAddressFamilies", "").split()
    if families:
        assert {"AF_UNIX", "AF_NETLINK", "AF_PACKET", "AF_INET", "AF_INET6"} <= set(families)
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_control_socket_is_in_the_runtime_directory():
    """The unit's RuntimeDirectory holds the config's default control socket."""
    from dataplane import config
    default = {f.name: f.default for f in dataclasses.fields(config.Vtep)}["control_socket"]
    assert os.path.dirname(default) == "/run/" + parse()["Service"]["RuntimeDirectory"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here (keys checked above)")
def test_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart= names an existing executable: check a copy that
    # points at this checkout's vtepd (or this Python) instead of the installed path.
    vtepd = pathlib.Path(sys.executable).with_name("vtepd")
    target = vtepd if os.access(vtepd, os.X_OK) else pathlib.Path(sys.executable)
    copy = tmp_path / "vtepd.service"
    copy.write_text(UNIT.read_text().replace(EXEC, str(target)))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings (exit 0): none may name our file.
    ours = [line for line in output.splitlines() if "vtepd.service" in line]
    assert not ours, "\n".join(ours)
