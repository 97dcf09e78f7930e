"""Resident memory of this process (Linux ``/proc``), shared by both sides of the benchmark (no dependencies).

``reset_peak`` writes 5 to ``/proc/self/clear_refs``, which resets the peak resident set size (``VmHWM``) to the
current one, so the peak after the attack minus the size before it is the attack's own peak working memory.
"""

from __future__ import annotations


def _status(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> float | None:
    return _status("VmRSS")


def peak_mb() -> float | None:
    return _status("VmHWM")
