"""Shared pieces of the benchmarks: timing, peak memory, machine description."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import os
import platform
import re
import time
from collections.abc import Callable

import torch
import torchvision


# ---- timing and memory --------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(step: Callable[[], object], device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each timed call of ``step`` after ``warmup`` untimed calls (synchronised on CUDA)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif platform.system() == "Linux":
        # Hand freed heap pages back to the OS so the next RSS baseline is not inflated.
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of one phase in MiB: CUDA allocator peak, or the rise of the process peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None
        self._start_kib: int | None = None

    def __enter__(self) -> PeakMemory:
        release_memory(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:  # "5" resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0)
                with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                    f.write("5")
                self._start_kib = _proc_status_kib("VmRSS")
            except OSError:
                self._start_kib = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._start_kib is not None:
            peak = _proc_status_kib("VmHWM")
            self.mib = None if peak is None else max(peak - self._start_kib, 0) / 1024


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        if match:
            return f"CPU {match.group(1).strip()}"
    except OSError:
        pass
    return f"CPU {platform.processor() or platform.machine()}"


def machine() -> dict:
    """What every benchmark's JSON header says about the machine and the versions."""
    import timm

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
    }


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def print_json_lines(head: dict, rows: list[dict]) -> None:
    """The machine-readable part of every benchmark: the header, then one JSON line per row."""
    import json

    print(json.dumps(head))
    for row in rows:
        print(json.dumps(row))
