"""The two C extensions; the rest is in pyproject.toml (Debian 12's setuptools, < 74.1, cannot read them there)."""

from setuptools import Extension, setup

WARNINGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

# Not optional: a silent fallback would hide a broken build; the runtime
# fallback in totmapsfs/parser/__init__.py is for copies installed without a compiler.
setup(
    ext_modules=[
        Extension(
            "totmapsfs.parser._speedups",
            sources=[
                "totmapsfs/parser/_speedups.c",
                "totmapsfs/parser/_format.c",
                "totmapsfs/parser/_mappings.c",
                "totmapsfs/parser/_mapkeys.c",
            ],
            depends=["totmapsfs/parser/_mappings.h"],
            extra_compile_args=[*WARNINGS, "-std=c11"],
        ),
        Extension(
            "totmapsfs.proc._speedups",
            sources=["totmapsfs/proc/_speedups.c", "totmapsfs/proc/_fields.c", "totmapsfs/proc/_batch.c"],
            depends=["totmapsfs/proc/_proc.h"],
            # gnu11: openat and O_CLOEXEC are POSIX.1-2008, which -std=c11 alone hides.
            extra_compile_args=[*WARNINGS, "-std=gnu11"],
        ),
    ]
)
