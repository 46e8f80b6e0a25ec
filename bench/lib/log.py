"""Progress lines on stderr, stamped with the seconds since the harness started."""

import sys
import time

T0 = time.monotonic()


def log(*a):
    print("[bench %6.1fs]" % elapsed(), *a, file=sys.stderr, flush=True)


def elapsed():
    return time.monotonic() - T0
