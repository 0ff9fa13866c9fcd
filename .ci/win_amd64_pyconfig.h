/* pyconfig.h for building a limited-API (abi3) extension for 64-bit Windows
 * CPython with mingw-w64, used by .ci/windows-python.sh in place of the host
 * CPython's own pyconfig.h.  The limited API's other headers are the same on
 * every OS; this file says what differs on win_amd64 (LLP64: long is 32 bits)
 * and that the API lives in a DLL (dllimport).  Written for this project; it
 * covers only what the limited API's headers read. */
#ifndef Py_CONFIG_H
#define Py_CONFIG_H

#if !defined(_WIN64) || !defined(__x86_64__)
#error "this pyconfig.h is for win_amd64 (x86_64-w64-mingw32) only"
#endif
#ifndef Py_LIMITED_API
#error "this pyconfig.h is for limited-API (abi3) extensions only"
#endif

#define MS_WINDOWS
#define MS_WIN32
#define MS_WIN64
#define NT_THREADS
#define WITH_THREAD

/* The interpreter is a DLL: PyAPI_FUNC / PyAPI_DATA are dllimport. */
#define Py_ENABLE_SHARED 1
#define HAVE_DECLSPEC_DLL

#define SIZEOF_SHORT 2
#define SIZEOF_INT 4
#define SIZEOF_LONG 4
#define SIZEOF_LONG_LONG 8
#define SIZEOF_VOID_P 8
#define SIZEOF_SIZE_T 8
#define SIZEOF_TIME_T 8
#define SIZEOF_WCHAR_T 2
#define SIZEOF_FLOAT 4
#define SIZEOF_DOUBLE 8
#define ALIGNOF_SIZE_T 8
#define ALIGNOF_LONG 4
#define LONG_BIT 32
#define WORD_BIT 32

/* mingw-w64 has ssize_t (64 bits on x86_64), so Py_ssize_t is ssize_t. */
#define HAVE_SSIZE_T 1

#define HAVE_STDDEF_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TYPES_H 1
#define HAVE_WCHAR_H 1

#endif /* Py_CONFIG_H */
