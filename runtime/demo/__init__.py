"""``xdpmon demo``: a SYN flood detected on demand, live, on a veth pair of its own.

    scenario    what is sent and when (the ground truth), checked before anything starts
    traffic     the benign frames (TCP connections, DNS, UDP, IPv6, VLAN) and the flood's
    sender      the sending processes (``python -m runtime.demo.sender``), one per kind
    timeline    what happened when, from the truth and the events: detection latency,
                victim, false alarms, what enforcement dropped
    view        the live view of a demo (compact: the header, the phase, the events)
    live        the run: namespaces, the monitor (runtime/monitor/), the senders, teardown

The demo runs from a checkout of xdpmon: it monitors with the apps of ``specs/`` and
their ASL in ``examples/asl/``, and builds its benign traffic with
``examples/traffic/generators.py``.

May import: monitor, traffic, control, ui; and examples.traffic (the benign frames). The
CLI compiles the specs.
"""
