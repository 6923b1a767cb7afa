"""Axes strings: one vocabulary, validated once at the boundary, never guessed.

An axes string names each array dimension with one letter of ``"STCZYX"``:
``S`` sample/batch, ``T`` time, ``C`` channel, ``Z``, ``Y``, ``X`` space.
Examples: ``"YX"``, ``"ZYX"``, ``"CYX"``, ``"TZYX"``.
"""

from __future__ import annotations

from fluorecon.core.errors import AxesError, message

AXES_VOCABULARY = "STCZYX"
SPATIAL = "ZYX"


def check_axes(axes: str, ndim: int | None = None) -> str:
    """Validate an axes string and return it in upper case.

    Parameters
    ----------
    axes : str
        Axes string such as ``"YX"`` or ``"czyx"`` (case-insensitive).
    ndim : int, optional
        Number of array dimensions the axes must describe.

    Returns
    -------
    str
        The upper-case axes string.

    Raises
    ------
    AxesError
        Unknown or repeated letters, no ``Y``/``X`` pair, or a length that differs from
        ``ndim``. The message names the offending axis.

    Examples
    --------
    >>> check_axes("zyx", ndim=3)
    'ZYX'
    """
    if not isinstance(axes, str) or not axes:
        raise AxesError(
            message(f"axes {axes!r}", f"a non-empty string of letters from {AXES_VOCABULARY!r}",
                    "Pass e.g. --axes YX or --axes ZYX.")
        )
    up = axes.upper()
    for letter in up:
        if letter not in AXES_VOCABULARY:
            raise AxesError(
                message(f"axes {axes!r} with unknown axis {letter!r}",
                        f"letters from {AXES_VOCABULARY!r}", "Use S, T, C, Z, Y or X.")
            )
        if up.count(letter) > 1:
            raise AxesError(
                message(f"axes {axes!r} with axis {letter!r} repeated", "each axis at most once",
                        "Remove the repeated letter.")
            )
    if "Y" not in up or "X" not in up:
        raise AxesError(
            message(f"axes {axes!r}", "both a Y and an X axis", "Images are at least 2D: add YX.")
        )
    if ndim is not None and len(up) != ndim:
        raise AxesError(
            message(f"axes {axes!r} ({len(up)} letters) for data with {ndim} dimensions",
                    "one letter per dimension",
                    "Pass an axes string of matching length, e.g. --axes "
                    f"{_suggest(ndim)}.")
        )
    return up


def _suggest(ndim: int) -> str:
    return {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX", 6: "STCZYX"}.get(ndim, "YX")


def default_axes(ndim: int) -> str:
    """Return the conventional axes for ``ndim`` dims when a format stores none.

    Only ``2 -> "YX"`` and ``3 -> "ZYX"`` are offered; anything else raises, since
    guessing channel versus time axes silently would corrupt results.
    """
    if ndim == 2:
        return "YX"
    if ndim == 3:
        return "ZYX"
    raise AxesError(
        message(f"a {ndim}-dimensional array with no axes metadata", "explicit axes",
                f"Pass --axes, e.g. --axes {_suggest(ndim)}.")
    )


def spatial_axes(axes: str) -> str:
    """Return the spatial axes (``Z``, ``Y``, ``X``) of ``axes``, in their order.

    Examples
    --------
    >>> spatial_axes("TCZYX")
    'ZYX'
    """
    return "".join(a for a in check_axes(axes) if a in SPATIAL)


def spatial_ndim(axes: str) -> int:
    """Number of spatial axes in ``axes`` (2 or 3)."""
    return len(spatial_axes(axes))


def to_canonical(axes: str) -> tuple[str, list[int]]:
    """Return the canonical order of ``axes`` (as in ``STCZYX``) and the permutation to it.

    Examples
    --------
    >>> to_canonical("YXC")
    ('CYX', [2, 0, 1])
    """
    up = check_axes(axes)
    canon = "".join(a for a in AXES_VOCABULARY if a in up)
    return canon, [up.index(a) for a in canon]
