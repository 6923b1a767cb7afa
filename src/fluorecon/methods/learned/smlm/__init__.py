"""Learned single-molecule localisation (torch): Deep-STORM and a DECODE-style network.

Both are trained on frames simulated with the user's camera, PSF, photons and background
(:mod:`fluorecon.simulate.smlm`), expose ``fit()``, ``localize(frames)``, ``save(folder)``
and ``load(folder)``, and return :class:`~fluorecon.simulate.smlm.Localizations`.
"""

from __future__ import annotations

import os

from fluorecon.methods.learned.model_io import read_model_config
from fluorecon.methods.learned.smlm.decode import DECODE, DECODEConfig
from fluorecon.methods.learned.smlm.deep_storm import DeepSTORM, DeepSTORMConfig

__all__ = ["DECODE", "DECODEConfig", "DeepSTORM", "DeepSTORMConfig", "SMLM_NETWORKS",
           "load_smlm_model"]

#: Network classes by method name.
SMLM_NETWORKS: dict[str, type[DeepSTORM] | type[DECODE]] = {
    DeepSTORM.name: DeepSTORM, DECODE.name: DECODE}


def load_smlm_model(folder: str | os.PathLike[str], *, device: str | None = None
                    ) -> DeepSTORM | DECODE:
    """Load a Deep-STORM or DECODE model folder, whichever it holds."""
    from fluorecon.core.errors import InputFileError, message

    mc = read_model_config(folder)
    cls = SMLM_NETWORKS.get(mc.method)
    if cls is None:
        raise InputFileError(message(f"a {mc.method!r} model in {folder}",
                                     f"an SMLM model ({', '.join(SMLM_NETWORKS)})",
                                     "Train one with: fluorecon smlm train."))
    return cls.load(folder, device=device)
