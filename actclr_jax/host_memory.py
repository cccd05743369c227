"""Transparent huge pages for XLA:CPU's step buffers (Linux, glibc >= 2.35).

XLA:CPU allocates every execution's temporaries anew (3.5 GB for the batch-128 MoCo v2 step of NTU
shape), and glibc serves blocks that large with a fresh mmap, freed after the step. So the kernel
faults in and zeroes each 4 KiB page again on every step: about a million page faults and 1.6 s of
system time per batch-128 step on 2 cores (README, "Benchmarks"). glibc's tunable
`glibc.malloc.hugetlb=1` makes malloc ask for transparent huge pages (madvise): one fault per 2 MiB
instead of per 4 KiB. glibc reads its tunables once, when a process starts, so an entry point that
wants them runs `reexec_with_huge_pages()` before its imports: the process replaces itself once,
with the same arguments and `GLIBC_TUNABLES` set. `ACTCLR_HUGE_PAGES=0` turns it off.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

TUNABLE = "glibc.malloc.hugetlb"
SWITCH = "ACTCLR_HUGE_PAGES"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def transparent_huge_page_mode(path: str = THP_SETTING) -> str:
  """The kernel's THP mode ("always", "madvise" or "never"); "" where it cannot be read."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return ""
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else ""


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the C library this process runs on, or None if it is not glibc."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    major, minor = version.split(".")[:2]
    return (int(major), int(minor)) if name == "glibc" else None
  except (AttributeError, OSError, ValueError):
    return None


def tunables_with_huge_pages(environ: Mapping[str, str], glibc: tuple[int, int] | None,
                             thp_mode: str) -> str | None:
  """The GLIBC_TUNABLES value to restart with, or None where a restart would change nothing.

  Nothing changes where the user turned it off (ACTCLR_HUGE_PAGES=0) or already set the tunable
  (which also ends the restart), where glibc predates 2.35 (no such tunable), or where the kernel's
  THP mode is not "madvise": "always" gives large mappings huge pages already, "never" gives none.
  """
  if environ.get(SWITCH, "1") == "0" or glibc is None or glibc < (2, 35):
    return None
  if thp_mode != "madvise":
    return None
  current = environ.get("GLIBC_TUNABLES", "")
  if TUNABLE in current:
    return None
  return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def huge_pages_in_malloc(environ: Mapping[str, str], glibc: tuple[int, int] | None,
                         thp_mode: str) -> bool:
  """Whether large mallocs get huge pages: THP "always", or "madvise" with the tunable set to 1
  at the process's start on a glibc that knows it."""
  if thp_mode == "always":
    return True
  tunable_set = f"{TUNABLE}=1" in environ.get("GLIBC_TUNABLES", "").split(":")
  return thp_mode == "madvise" and glibc is not None and glibc >= (2, 35) and tunable_set


def reexec_with_huge_pages() -> None:
  """Replaces this process by itself with huge pages in malloc, where that changes anything.

  Call it first thing in an entry point (`python main.py ...`, `python -m ...`), before jax starts
  any thread: the process image is replaced, with the same PID, interpreter and arguments.
  """
  tunables = tunables_with_huge_pages(os.environ, glibc_version(), transparent_huge_page_mode())
  if tunables is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, dict(os.environ, GLIBC_TUNABLES=tunables))
