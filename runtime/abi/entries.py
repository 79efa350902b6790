"""A map's entries as two byte strings: every key, then every value, end to end.

``Entries(keys, values, key_size, value_size)`` is what reading a hash map in
batches gives (runtime/dataplane/batch.py ``read_columns``): no Python object
per entry until one is asked for. It is a sequence of ``(key, value)`` byte
pairs (``len``, indexing, iteration), so every decoder that walks entries works
on it; and it answers what a live reading needs of a million entries at C speed:
``u64_column(offset)`` (the u64 at ``offset`` of every value, as a list) and
``key(i)``.
"""

from __future__ import annotations


class Entries:
    __slots__ = ("key_bytes", "value_bytes", "key_size", "value_size", "n")

    def __init__(self, keys: bytes, values: bytes, key_size: int, value_size: int):
        self.key_bytes, self.value_bytes = keys, values   # not .keys: dict() would take it for a mapping
        self.key_size, self.value_size = key_size, value_size
        self.n = len(values) // value_size if value_size else 0

    @classmethod
    def of(cls, pairs, key_size: int, value_size: int) -> "Entries":
        pairs = list(pairs)
        return cls(b"".join(k for k, _ in pairs), b"".join(v for _, v in pairs), key_size, value_size)

    def __len__(self) -> int:
        return self.n

    def key(self, i: int) -> bytes:
        return self.key_bytes[i * self.key_size:(i + 1) * self.key_size]

    def value(self, i: int) -> bytes:
        return self.value_bytes[i * self.value_size:(i + 1) * self.value_size]

    def __getitem__(self, i: int) -> tuple[bytes, bytes]:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.key(i), self.value(i)

    def __iter__(self):
        ks, vs, K, V = self.key_size, self.value_size, self.key_bytes, self.value_bytes
        for i in range(self.n):
            yield K[i * ks:(i + 1) * ks], V[i * vs:(i + 1) * vs]

    def u64_column(self, offset: int) -> list[int]:
        """The little-endian u64 at ``offset`` (a multiple of 8) of every value."""
        if self.value_size % 8 or offset % 8:
            import struct
            return [struct.unpack_from("<Q", self.value_bytes, i * self.value_size + offset)[0] for i in range(self.n)]
        mv = memoryview(self.value_bytes).cast("Q")
        step = self.value_size // 8
        return mv[offset // 8::step].tolist()

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"Entries({self.n} entries of {self.key_size}+{self.value_size} bytes)"
