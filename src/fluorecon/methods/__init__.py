"""Reconstruction methods, classical and learned, behind one interface.

Use :func:`create` with a registered name, or import a method class directly::

    from fluorecon.methods import create
    method = create("tv")            # self-calibrating TV denoiser
    restored = method.predict(image, axes="YX")
"""

from fluorecon.methods.base import Method, MethodConfig
from fluorecon.methods.registry import available, create, get_method, register

__all__ = ["Method", "MethodConfig", "available", "create", "get_method", "register"]
