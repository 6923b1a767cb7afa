"""Lazy registry entries of the learned methods (torch-free: importing this registers
``"module:Class"`` strings; torch is imported only when a method is first used)."""

from __future__ import annotations

from fluorecon.methods.registry import register_lazy

LEARNED_METHODS: dict[str, str] = {
    "care": "fluorecon.methods.learned.care:CARE",
    "n2n": "fluorecon.methods.learned.care:Noise2Noise",
    "n2v": "fluorecon.methods.learned.n2v:Noise2Void",
    "n2v2": "fluorecon.methods.learned.n2v:N2V2",
    "n2s": "fluorecon.methods.learned.n2s:Noise2Self",
    "dip": "fluorecon.methods.learned.dip:DeepImagePrior",
    "deconv": "fluorecon.methods.learned.deconv:LearnedDeconvolution",
    "upsample": "fluorecon.methods.learned.upsample:LearnedUpsampling",
    "iso": "fluorecon.methods.learned.iso:IsotropicCARE",
}

#: structN2V patterns (``N2VConfig.struct_mask``): the in-plane (YX) directions along which
#: the noise is correlated; here so that torch-free front ends can offer them.
STRUCT_MASKS = ("none", "horizontal", "vertical", "cross")
#: The blind-spot methods, which take a struct mask.
BLIND_SPOT_METHODS = ("n2v", "n2v2")
#: ``TrainingConfig.precision`` values (the first is the default).
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")

for _name, _target in LEARNED_METHODS.items():
    register_lazy(_name, _target)
