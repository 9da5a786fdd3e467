"""The system benchmark (perf/bench_system.py): vtepd against a null
forwarder, the kernel's bridge + VXLAN device and Open vSwitch's userspace
datapath, in network namespaces, with a traffic generator and a sink.

    topology.py   namespaces, veths, addresses, counters, sysfs/sysctl; cleanup
    systems.py    the devices under test: how each is set up, pinned and stopped
    frames.py     the generator's pcaps: inner frames (sizes, IMIX, flows) and tunnel packets
    trials.py     one trial (offered load -> loss, CPU), latency trials, the generator's command
    search.py     RFC 2544 throughput: the rate search over trials (pure, unit-tested)
    plan.py       what a run measures: the default, --quick and the options that narrow it
    tcp.py        iperf3, ping and UDP request/response between two hosts through two VTEPs
    report.py     the table, the ratios against the targets, RESULTS.md and the plots
"""
