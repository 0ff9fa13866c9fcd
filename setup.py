import sysconfig

from setuptools import setup

# An abi3 wheel (one per platform, CPython 3.10+), except on free-threaded
# CPython, which has no limited API before 3.15: there the wheel is built
# for that interpreter alone (cffi does the same for the extension itself).
free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

setup(
    cffi_modules=["pysock/_build.py:ffibuilder"],
    options={} if free_threaded else {"bdist_wheel": {"py_limited_api": "cp310"}},
)
