"""Process-level settings that make CPU training faster. Called explicitly by long-running entry points
(``stylenada train``, the benchmarks), never by the library; importing stylenada changes nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)
_done = False


def set_allocator(release_memory: bool) -> bool:
    """The CPU allocator policy of a training process (``TrainConfig.release_memory``); True when freed memory
    is recycled. By default :func:`keep_freed_memory` (faster). With ``release_memory`` freed memory goes back
    to the OS (recycled blocks fragment glibc's heap: at 1024 px they add about half to the peak footprint),
    and PyTorch is asked for transparent huge pages for large tensors (``THP_MEM_ALLOC_ENABLE``, where the
    kernel allows them), which makes the fresh memory of each step cheaper to fault in (docs/benchmarks.md)."""
    if release_memory:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
        return False
    return keep_freed_memory()


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates gigabytes of activations and frees them again; by default glibc serves
    each large block with a fresh ``mmap`` and unmaps it on free, so every step pays about a million
    page faults (about 20% of a 256 px step on CPU). With mmap disabled for malloc and a high trim
    threshold, the blocks are recycled: the process keeps its peak footprint, and the faults vanish.
    Returns False (and changes nothing) where glibc is not the C library.
    """
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _done = ok
    if not ok:
        log.debug("mallopt not supported; leaving the allocator as it is")
    return ok


def cpu_description() -> dict:
    """The CPU a benchmark ran on: model name and whether it has bf16 / AMX instructions (without them
    bf16 is emulated and slower than fp32, so figures from machines with and without are not comparable)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {"cpu": model, "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})}


def require_extra(module: str, extra: str, what: str):
    """Import an optional dependency, or one StylenadaError naming the extra that installs it."""
    import importlib

    from ..errors import StylenadaError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise StylenadaError(f"{what} needs {module}, which is not installed: pip install 'stylenada[{extra}]'"
                             ) from None

