"""Normalizing-flow bijections; ``build_flow(dim, flow="usf" | "affine")`` builds a flow."""

from .base import Bijection, Conjugate, Sequential
from .build import FLOWS, block, build_flow, check_flow, coupling
from .coupling import AdditiveCoupling, AffineCoupling
from .linear import FixedLinear, LUConv1x1, LULinear, Permutation
from .reshape import DepthToSpace
from .scale import ActNorm, Scale
from .subnets import conv, mlp

__all__ = [
    "FLOWS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bijection",
    "Conjugate",
    "DepthToSpace",
    "FixedLinear",
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
    "mlp",
]
