"""The free heap handed back: only after enough growth, and really given back on glibc."""

from __future__ import annotations

import gc
import platform

from pipeline.heap import HeapTrimmer, freeze_long_lived, malloc_trim, rss_bytes

MIB = 2**20


class FakeProcess:
    def __init__(self, rss: int) -> None:
        self.rss = rss
        self.trims = 0
        self.free = 0  # what a trim gives back

    def trim(self) -> None:
        self.trims += 1
        self.rss -= self.free
        self.free = 0


def test_it_trims_only_once_rss_grew_by_the_threshold() -> None:
    proc = FakeProcess(100 * MIB)
    heap = HeapTrimmer(growth_mib=8, trim=proc.trim, rss=lambda: proc.rss)
    proc.rss += 7 * MIB
    assert heap.tick() == 0
    assert proc.trims == 0
    proc.rss += 2 * MIB
    proc.free = 6 * MIB
    assert heap.tick() == 6 * MIB
    assert proc.trims == 1
    assert proc.rss == 103 * MIB
    # The next growth is counted from what the trim left, not from the start.
    proc.rss += 7 * MIB
    assert heap.tick() == 0
    proc.rss += 1 * MIB
    assert heap.tick() == 0  # trimmed, nothing was free
    assert proc.trims == 2
    assert heap.returned == 6 * MIB


def test_without_malloc_trim_it_does_nothing() -> None:
    proc = FakeProcess(100 * MIB)
    heap = HeapTrimmer(growth_mib=1, trim=None, rss=lambda: proc.rss)
    proc.rss += 50 * MIB
    assert heap.tick() == 0


def test_on_glibc_a_burst_s_freed_heap_goes_back() -> None:
    trim = malloc_trim()
    if platform.libc_ver()[0] != "glibc":
        assert trim is None or callable(trim)
        return
    assert trim is not None
    # Blocks above pymalloc's 512 bytes come from glibc; keeping every 50th pins the heap's
    # top, so only a trim (not glibc's own top-of-heap release) returns the rest.
    burst = [bytearray(600) for _ in range(100_000)]
    kept = burst[::50]
    del burst
    heap = HeapTrimmer(growth_mib=0, trim=trim)
    before = rss_bytes()
    given = heap.tick()
    assert given > 20 * MIB
    assert rss_bytes() < before - 20 * MIB
    assert len(kept) == 2000


class _Held:
    """A long-lived object in a reference cycle, as Faust's services and tables are."""

    def __init__(self) -> None:
        self.me = self


def test_what_lives_at_start_up_is_left_out_of_collections() -> None:
    held = _Held()
    try:
        assert any(o is held for o in gc.get_objects())
        frozen = freeze_long_lived()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is held for o in gc.get_objects())  # no collection walks it
        later = _Held()
        assert any(o is later for o in gc.get_objects())  # what comes after still is walked
    finally:
        gc.unfreeze()  # the rest of the suite as it was
