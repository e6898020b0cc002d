"""Normalizing-flow bijections; ``build_flow(dim, flow="usf" | "usf-gin" | "affine")`` builds a flow."""

from .base import Bijection, Conjugate, Sequential
from .build import FLOWS, USF_FLOWS, block, build_flow, check_flow, coupling, is_usf
from .coupling import AdditiveCoupling, AffineCoupling, GINCoupling
from .linear import FixedLinear, LUConv1x1, LULinear, Permutation
from .reshape import DepthToSpace
from .scale import ActNorm, Scale
from .subnets import conv, mlp

__all__ = [
    "FLOWS",
    "USF_FLOWS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bijection",
    "Conjugate",
    "DepthToSpace",
    "FixedLinear",
    "GINCoupling",
    "LUConv1x1",
    "LULinear",
    "Permutation",
    "Scale",
    "Sequential",
    "block",
    "build_flow",
    "check_flow",
    "conv",
    "coupling",
    "is_usf",
    "mlp",
]
