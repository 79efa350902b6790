"""Defaults and bounds the compiler applies where a spec says nothing.

Every number here is documented in the README's language reference.
"""

KEYED_STAT_SIZE = 16_384          # entries of a keyed statistic's hash map
TRACK_SIZE = 65_536               # entries of a track table
MAX_MAP_SIZE = 1 << 24            # 16 Mi entries: bigger is almost surely a typo
MAX_KEY_FIELDS = 8
MAX_KEY_BYTES = 64

DISTINCT_REGISTERS = 4096         # HyperLogLog registers of an unkeyed distinct
DISTINCT_REGISTERS_KEYED = 64     # per key: 64 registers ~ 13% standard error
DISTINCT_REGISTERS_MIN = 16
DISTINCT_REGISTERS_MAX = 65_536
DISTINCT_REGISTERS_KEYED_MAX = 1024

CMS_WIDTH = 2048
CMS_DEPTH = 4
CMS_WIDTH_MAX = 1 << 20
CMS_DEPTH_MAX = 16

SEND_PACKET_LIMIT = (1000, 1_000_000_000)   # 1000/s
ALERT_LIMIT = (1, 1_000_000_000)            # 1/s
SUMMARY_EVERY_NS = 1_000_000_000            # 1s
MAX_SEND_FIELDS = 16

ON_FULL = ("count", "lru")       # counted insert failures (default) or evict least recently used
