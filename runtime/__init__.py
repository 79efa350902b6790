"""The xdpmon runtime: everything after compilation, one job per subpackage.

    abi        the manifest view, event records, snapshot decoding (what the
               compiler's artifacts mean); imports nothing from runtime
    capture    reading pcap/pcapng captures; imports nothing from runtime
    dataplane  loading programs with BCC, attaching them to interfaces, maps,
               BPF_PROG_TEST_RUN; imports abi
    engines    the engine protocol and its implementations (kernel replay,
               reference interpreter, live), feeding them frames; imports abi,
               capture, dataplane
    asl        the host of the apps' Python handlers; imports abi
    control    the one writer of params, enable bits, blocklist; the control
               socket; the deployment config; imports abi, dataplane
    traffic    live traffic: frames at a controlled rate from a network namespace
               (BPF_PROG_TEST_RUN live frames, or a transmit ring); veth pairs;
               imports dataplane
    export     events as JSON lines, the Prometheus exporter; imports abi
    ui         rendering snapshots and readings; imports abi
    deploy     apps added, removed and changed in a running instance: the pins in
               bpffs, what changes, the migration of maps, the swap; imports abi,
               dataplane, engines, control
    monitor    a running instance: load, attach, read every interval, serve,
               detach; imports abi, dataplane, engines, asl, control, export, ui,
               deploy
    demo       ``xdpmon demo``: a flood detected on demand on a veth pair of its own,
               and its timeline; imports monitor, traffic, control, ui
    cli        the ``xdpmon`` command: thin commands over the packages above;
               imports any of them

Only ``engines`` (the reference interpreter is built from the IR), ``control``
(operators' values take the language's units, dsl/units.py), ``deploy`` (it
compiles the next program of a running instance) and ``cli`` may import
``compiler`` or ``dsl``. tests/test_layout.py enforces these rules.
"""
