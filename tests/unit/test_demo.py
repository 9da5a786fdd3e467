"""`make demo` runs and its matrix tells the RFC 5517 story."""
import subprocess
import sys


def test_demo_prints_the_private_vlan_matrix(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dataplane.demo"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()
            if line.startswith("  A/") and "->" not in line}
    # Columns: A/gw A/iso A/web A/db B/gw B/iso B/web B/db
    assert rows["A/iso"] == ["Y", "-", "deny@A", "deny@A", "Y", "deny@A", "deny@A", "deny@A"]
    assert rows["A/web"] == ["Y", "deny@A", "-", "deny@A", "Y", "deny@A", "Y", "deny@A"]
    assert rows["A/gw"] == ["-"] + ["Y"] * 7
    assert "A/iso  -> A/gw, B/gw" in done.stdout
    assert (tmp_path / "build" / "demo-underlay.pcap").stat().st_size > 24
