"""A worker raises its soft limit of open files to the hard one (a connection per portal)."""

from __future__ import annotations

import resource

from pipeline.__main__ import open_files_limit


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(256, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        now = open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (now, hard)
        assert now > lower and (now == hard or hard == resource.RLIM_INFINITY)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
