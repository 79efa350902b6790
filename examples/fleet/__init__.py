"""A fleet of xdpmon hosts on one machine, monitored as a real one is: ``python -m examples.fleet``
(``make fleet-demo``), and tests/test_fleet.py.

- topology.py: the namespaces (hosts, their traffic peers, the monitoring namespace) and links;
- procs.py: the long-running processes (xdpmon instances, Prometheus servers), stopped by pid;
- tiers.py: the site and global Prometheus, their configs, their HTTP API;
- traffic.py: each host's traffic and the flood, and what they should count;
- fleet.py: ``Fleet``, all of it up and down in order;
- __main__.py: the demo;
- host.yaml, prometheus-site.yml, prometheus-global.yml: the configs, ``${...}`` filled in;
- tcp_syns.mon: SYNs per destination as a counter, for fleet-wide totals.
"""
