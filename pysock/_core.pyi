# Type stub for the cffi extension built by pysock/_build.py from csrc/pysock.h.
from typing import Any

ffi: Any
lib: Any
