"""A GGUF sanity check done in Python before llama.cpp sees the file.

llama.cpp may abort() the whole interpreter on a malformed file (GGML_ASSERT), so the
header, every metadata entry and every tensor's extent are checked here first: a random
file, a truncated download or an HTML error page becomes one clear ConfigError.
Format: ggml's docs/gguf.md (magic "GGUF", version, tensor count, metadata KVs, tensor
infos, data aligned to `general.alignment`, default 32).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from chatcli.errors import ConfigError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
# Sizes of the fixed-width metadata value types (gguf.md "gguf_metadata_value_type").
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# ggml_type -> (block size, bytes per block), from ggml.c's type_traits.
_TYPE_SIZE = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}


class _Corrupt(Exception):
    pass


class _Reader:
    def __init__(self, buf: Any, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise _Corrupt(f"it ends inside the header (at byte {self.size})")
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Corrupt(f"it ends inside the header (at byte {self.size})")
        self.pos += n

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> bytes:
        return self.take(self.unpack("<Q"))

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY and depth == 0:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALAR:
                self.skip(count * struct.calcsize(_SCALAR[etype]))
            elif etype == _STRING:
                if count > self.size // 8:
                    raise _Corrupt("an array is longer than the file")
                for _ in range(count):
                    self.skip(self.unpack("<Q"))
            else:
                raise _Corrupt(f"unknown array element type {etype}")
            return None
        raise _Corrupt(f"unknown metadata value type {vtype}")


def inspect(data: Any, size: int) -> dict[str, Any]:
    """Parse a GGUF header from a buffer; raises _Corrupt. Returns version, counts, needed size."""
    r = _Reader(data, size)
    if size < 4 or bytes(data[:4]) != MAGIC:
        raise _Corrupt("not a GGUF file")
    r.skip(4)
    version = r.unpack("<I")
    if version not in (2, 3):
        raise _Corrupt(f"GGUF version {version} is not supported (2 or 3 expected)")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    # Each entry takes at least 8+4 (KV) / 8+4+8+4+8 (tensor info) bytes: more cannot fit.
    if n_kv > size // 12 or n_tensors > size // 32:
        raise _Corrupt(f"it ends inside the header, which claims {n_kv} metadata entries and {n_tensors} tensors")
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.unpack("<I"))
        if key == b"general.alignment":
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise _Corrupt(f"general.alignment {value!r} is not a power of two")
            alignment = value
    end = 0
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if n_dims > MAX_DIMS:
            raise _Corrupt(f"tensor {name[:60].decode('utf-8', 'replace')!r} has {n_dims} dimensions")
        count = 1
        for _ in range(n_dims):
            count *= r.unpack("<Q")
        ttype, offset = r.unpack("<I"), r.unpack("<Q")
        if offset % alignment:
            raise _Corrupt("a tensor's offset is not aligned")
        nbytes = 0
        if ttype in _TYPE_SIZE:
            block, per_block = _TYPE_SIZE[ttype]
            nbytes = (count + block - 1) // block * per_block
        end = max(end, offset + nbytes)
    data_start = (r.pos + alignment - 1) // alignment * alignment
    return {"version": version, "tensors": n_tensors, "metadata": n_kv, "needed": data_start + end}


def check(path: Path) -> None:
    """Raise ConfigError unless `path` looks like a complete GGUF model."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                head = b""
                if size:
                    f.seek(0)
                    head = f.read()
                info = None
                problem = "not a GGUF file" if head[:4] != MAGIC else f"it ends after {size} bytes"
            else:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                    try:
                        info = inspect(buf, size)
                        problem = None
                    except _Corrupt as exc:
                        info, problem = None, str(exc)
    except IsADirectoryError:
        raise ConfigError(f"the model {path} is a directory, not a .gguf file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the model {path}: {exc.strerror or exc}") from None
    if problem == "not a GGUF file":
        raise ConfigError(f"{path} is not a GGUF model file (llama.cpp needs a .gguf model)")
    if problem:
        raise ConfigError(f"the model file {path} is corrupt or incomplete: {problem}",
                          hint="download it again")
    assert info is not None
    if info["needed"] > size:
        raise ConfigError(
            f"the model file {path} is truncated: it has {size} bytes, its tensors need {info['needed']}",
            hint="download it again",
        )
