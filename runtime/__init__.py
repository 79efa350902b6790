"""The xdpmon runtime: everything after compilation, one job per subpackage.

    abi        the manifest view, event records, snapshot decoding (what the
               compiler's artifacts mean); imports nothing from runtime
    capture    reading pcap/pcapng captures; imports nothing from runtime
    dataplane  loading programs with BCC, maps, BPF_PROG_TEST_RUN; imports abi
    engines    the engine protocol and its implementations (kernel replay,
               reference interpreter), feeding them frames; imports abi,
               capture, dataplane
    asl        the host of the apps' Python handlers; imports abi
    control    (to come) the one writer of params, enable bits, blocklist; imports
               abi, dataplane
    export     (to come) Prometheus metrics; imports abi
    ui         rendering snapshots; imports abi
    cli        the ``xdpmon`` command: thin commands over the packages above;
               imports any of them

Only ``engines`` (the reference interpreter is built from the IR) and ``cli``
may import ``compiler`` or ``dsl``. tests/test_layout.py enforces these rules.
"""
