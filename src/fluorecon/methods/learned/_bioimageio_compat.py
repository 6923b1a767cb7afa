"""Compatibility of bioimageio.spec 0.5.12 / 0.5.13 with pydantic >= 2.14.

bioimageio.spec up to 0.5.13 calls pydantic's serialisation wrap handlers as
``handler(value, info)``, passing the ``SerializationInfo`` where pydantic expects an
``index_key`` (taken from an old pydantic docstring example). pydantic 2.14 rejects that
with ``TypeError: 'index_key' is expected to be an integer or a string`` (pydantic PR
#13506), so writing any model description with file references fails. bioimageio.spec
0.5.14 calls ``handler(value)``; bioimageio.core 0.11 still pins bioimageio.spec 0.5.12.

:func:`ensure_compatible` applies the same one-line fix to the three affected serialiser
functions of an old bioimageio.spec, in place, only when the installed versions need it
(and does nothing otherwise). Remove this module once bioimageio.core allows
bioimageio.spec >= 0.5.14.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import re
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

_HANDLER_CALL = re.compile(r"handler\(\s*(\w+),\s*info,[^\n]*\n\s*\)")
_done = False


def _needs_fix() -> bool:
    import bioimageio.spec
    import pydantic
    from packaging.version import Version

    return (Version(bioimageio.spec.__version__) < Version("0.5.14")
            and Version(pydantic.VERSION) >= Version("2.14"))


def _fix_function(func: Any) -> bool:
    """Recompile ``func`` with ``handler(value, info, ...)`` -> ``handler(value)``."""
    src = textwrap.dedent(inspect.getsource(func))
    fixed, n = _HANDLER_CALL.subn(r"handler(\1)", src)
    if not n:
        return False
    lines = fixed.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("def "))
    namespace: dict[str, Any] = dict(func.__globals__)
    exec(compile("".join(lines[start:]), inspect.getsourcefile(func) or "<bioimageio>",
                 "exec"), namespace)
    new = namespace[func.__name__]
    if new.__code__.co_freevars != func.__code__.co_freevars:  # pragma: no cover
        return False
    func.__code__ = new.__code__
    return True


def ensure_compatible() -> None:
    """Make bioimageio.spec < 0.5.14 serialise file references under pydantic >= 2.14."""
    global _done
    if _done:
        return
    _done = True
    if not _needs_fix():
        return
    from bioimageio.spec._internal import io_packaging
    from bioimageio.spec._internal.validated_string_with_inner_node import (
        ValidatedStringWithInnerNode,
    )
    from bioimageio.spec.model import v0_4

    targets = [io_packaging.package_file_descr_serializer]
    weights_ser = getattr(v0_4, "package_weights", None)
    if weights_ser is not None:
        targets.append(weights_ser)
    proxy = ValidatedStringWithInnerNode.__dict__.get("_serialize")
    func = getattr(proxy, "wrapped", proxy)
    if inspect.isfunction(func):
        targets.append(func)
    for func in targets:
        _fix_function(func)


@contextlib.contextmanager
def closing_readers() -> Iterator[None]:
    """Collect the file readers bioimageio.spec leaves open, without ResourceWarnings.

    bioimageio.spec opens package files (hash checks, test tensors, documentation, zip
    members) through readers it never closes, relying on the garbage collector, which
    then warns (``ResourceWarning: unclosed file``). This context runs the wrapped
    bioimageio calls, then collects garbage with that warning ignored, so the files
    are closed here rather than at a random later point.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()
