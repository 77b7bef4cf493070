"""Every length a GGUF header claims, checked against the file's size before gguf's reader runs.

gguf.GGUFReader trusts the header: a count of 2^62 key-values or an array of 2^60 strings sends it
reading (or allocating) far past the end. This walk reads the same header with every count and
length bounded by the bytes that remain, so a hostile or cut file is one line, found in one pass.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from bench.errors import UsageError
from bench.inputs import open_input

# Fixed sizes of GGUF value types (gguf-py constants.GGUFValueType); 8 is a string, 9 an array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY_DEPTH = 4
_MAX_DIMS = 8  # ggml's GGML_MAX_DIMS is 4


class _Header:
    def __init__(self, data: mmap.mmap | bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 24

    def fail(self, what: str) -> UsageError:
        return UsageError(f"{self.path}: not a readable GGUF file ({what} at byte {self.offset} claims more "
                          f"than the file's {len(self.data):,} bytes hold)")

    def take(self, count: int, what: str) -> int:
        if count < 0 or self.offset + count > len(self.data):
            raise self.fail(what)
        start, self.offset = self.offset, self.offset + count
        return start

    def uint(self, size: int, what: str) -> int:
        start = self.take(size, what)
        return int.from_bytes(self.data[start:start + size], "little")

    def string(self, what: str) -> None:
        self.take(self.uint(8, f"{what} length"), what)

    def value(self, value_type: int, depth: int = 0) -> None:
        if value_type in _FIXED:
            self.take(_FIXED[value_type], "a value")
        elif value_type == _STRING:
            self.string("a string")
        elif value_type == _ARRAY and depth < _MAX_ARRAY_DEPTH:
            item_type, count = self.uint(4, "an array type"), self.uint(8, "an array length")
            if item_type in _FIXED:
                self.take(count * _FIXED[item_type], "an array")
                return
            if count * 8 > len(self.data) - self.offset:  # every item takes 8 bytes at least
                raise self.fail("an array length")
            for _ in range(count):
                self.value(item_type, depth + 1)
        else:
            raise UsageError(f"{self.path}: not a readable GGUF file (value type {value_type} at byte {self.offset})")


def check_gguf_header(path: Path) -> None:
    """UsageError (one line) when the header's counts or lengths overrun the file; else nothing."""
    with open_input(path, UsageError, "GGUF file") as source:
        size = source.seek(0, 2)
        if size < 24:
            raise UsageError(f"{path}: not a readable GGUF file ({size} bytes: shorter than its header)")
        with mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as data:
            magic, _version, tensor_count, kv_count = struct.unpack_from("<4sIQQ", data, 0)
            if magic != b"GGUF":
                raise UsageError(f"{path}: not a GGUF file (magic {magic!r})")
            header = _Header(data, path)
            if kv_count * 13 > size or tensor_count * 24 > size:  # the smallest key-value / tensor entry
                raise UsageError(f"{path}: not a readable GGUF file (header claims {kv_count:,} key-values and "
                                 f"{tensor_count:,} tensors; the file has {size:,} bytes)")
            for _ in range(kv_count):
                header.string("a key")
                header.value(header.uint(4, "a value type"))
            for _ in range(tensor_count):
                header.string("a tensor name")
                dims = header.uint(4, "a tensor's dimension count")
                if dims > _MAX_DIMS:
                    raise UsageError(f"{path}: not a readable GGUF file (a tensor with {dims} dimensions)")
                header.take(dims * 8 + 4 + 8, "a tensor's shape")
