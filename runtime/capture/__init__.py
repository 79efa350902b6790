"""Sources of frames: pcap and pcapng captures (``pcap``).

May import: nothing from runtime.
"""
