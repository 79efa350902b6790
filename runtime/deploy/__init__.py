"""Apps added, removed and changed in a running instance, without losing a frame or a count.

    pindir      the instance's directory in bpffs, where the maps outlive a program
    changes     what replacing the program changes (``ctl plan``)
    fold        migrating a map whose layout changed, in the kernel
    carry       params, enable times and rate limiters taken over by name
    verify      loading the next program in a process of its own first
    swap        the transaction: prepare, swap on every interface, quiesce, fold, clean up
    deployment  the instance's spec files and removed apps; the ctl requests

May import: abi, dataplane, engines, control (and ``compiler``, ``dsl``: it compiles the
next program).
"""
