# Type stub for the cffi extension built by pysock/_build.py from csrc/pysock.h.
# Only pysock/_binding.py imports it (tests and benchmarks may too).
from typing import Any

ffi: Any
lib: Any
