"""Huge pages for XLA's step buffers: when an entry point restarts itself, and what it gains."""

import os
import subprocess
import sys

import pytest

from actclr_jax import host_memory

GLIBC = (2, 36)


@pytest.mark.parametrize("environ, glibc, thp, expected", [
    ({}, GLIBC, "madvise", "glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "madvise",
     "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    # Set already: by the user, or by the restart itself, which must not loop.
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise", None),
    ({"ACTCLR_HUGE_PAGES": "0"}, GLIBC, "madvise", None),
    ({}, (2, 34), "madvise", None),
    ({}, None, "madvise", None),
    ({}, GLIBC, "always", None),
    ({}, GLIBC, "never", None),
    ({}, GLIBC, "", None),
])
def test_restart_only_where_the_tunable_changes_something(environ, glibc, thp, expected):
  assert host_memory.tunables_with_huge_pages(environ, glibc, thp) == expected


def test_transparent_huge_page_mode_reads_the_bracketed_word(tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always [madvise] never\n")
  assert host_memory.transparent_huge_page_mode(str(setting)) == "madvise"
  assert host_memory.transparent_huge_page_mode(str(tmp_path / "absent")) == ""


def _huge_pages_possible() -> bool:
  return host_memory.tunables_with_huge_pages(
      {}, host_memory.glibc_version(), host_memory.transparent_huge_page_mode()) is not None


# The child prints its PID before the restart and after it, then the tunables it runs with, then
# the page faults taken while it fills 256 MiB from C's malloc (a fresh mmap; not numpy, which
# asks for huge pages itself).
_CHILD = """
import ctypes, os, resource
print(os.getpid(), flush=True)
from actclr_jax import host_memory
host_memory.reexec_with_huge_pages()
malloc = ctypes.CDLL(None).malloc
malloc.restype = ctypes.c_void_p
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(malloc(1 << 28), 1, 1 << 28)
print(os.environ.get("GLIBC_TUNABLES", ""))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run_child(**env) -> list[str]:
  environ = {k: v for k, v in os.environ.items()
             if k not in ("GLIBC_TUNABLES", "ACTCLR_HUGE_PAGES")}
  result = subprocess.run([sys.executable, "-c", _CHILD], env=dict(environ, **env), check=True,
                          capture_output=True, text=True, timeout=120)
  return result.stdout.splitlines()


@pytest.mark.skipif(not _huge_pages_possible(),
                    reason="needs glibc >= 2.35 and the kernel's THP mode 'madvise'")
def test_the_restart_keeps_the_process_and_cuts_page_faults():
  pid_first, pid_again, tunables, faults_huge = _run_child()
  assert pid_first == pid_again
  assert tunables == "glibc.malloc.hugetlb=1"
  pid, tunables, faults_small = _run_child(ACTCLR_HUGE_PAGES="0")
  assert tunables == ""
  # 256 MiB is 65,536 pages of 4 KiB and 128 of 2 MiB; allow for pages the kernel could not
  # give as huge ones.
  assert int(faults_small) > 60_000
  assert int(faults_huge) < int(faults_small) / 4


def test_huge_pages_in_malloc_reads_the_tunable():
  on = {"GLIBC_TUNABLES": "a=1:glibc.malloc.hugetlb=1"}
  assert host_memory.huge_pages_in_malloc(on, GLIBC, "madvise")
  assert not host_memory.huge_pages_in_malloc(
      {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise")
  assert not host_memory.huge_pages_in_malloc({}, GLIBC, "madvise")
  # The tunable is not enough where glibc does not know it or the kernel gives no huge pages,
  # and not needed where the kernel gives them to every large mapping.
  assert not host_memory.huge_pages_in_malloc(on, (2, 34), "madvise")
  assert not host_memory.huge_pages_in_malloc(on, GLIBC, "never")
  assert host_memory.huge_pages_in_malloc({}, GLIBC, "always")
