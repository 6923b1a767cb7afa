"""fluorecon: fluorescence image reconstruction you can measure and trust.

The top-level import is cheap: heavy layers (methods, simulate, io) load when used.

Examples
--------
>>> import fluorecon
>>> fluorecon.__version__  # doctest: +SKIP
'0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
