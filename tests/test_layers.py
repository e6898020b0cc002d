"""The architecture's rules that code can check: every flow layer declares constant_logdet."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

import usfad
from usfad.flows import AdditiveCoupling, AffineCoupling, Conjugate, LULinear, Sequential, mlp
from usfad.flows.base import Bijection
from usfad.flows.coupling import _Coupling

#: composites that derive constant_logdet per instance, in __init__, from their parts
DERIVED = {Sequential, Conjugate}
#: bases that are not layers themselves (instantiating one must fail)
ABSTRACT = {_Coupling}


def _usfad_bijections() -> list[type[Bijection]]:
    """Every subclass of Bijection defined in usfad, after importing every usfad module."""
    for info in pkgutil.walk_packages(usfad.__path__, "usfad."):
        importlib.import_module(info.name)
    found, todo = [], [Bijection]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("usfad.") and sub not in found:
                found.append(sub)
    return found


def _declarer(cls: type) -> type | None:
    """The nearest class in ``cls``'s MRO whose own dict sets constant_logdet."""
    return next((k for k in cls.__mro__ if "constant_logdet" in vars(k)), None)


def test_bijection_itself_has_no_default():
    assert _declarer(Bijection) is None and not hasattr(Bijection, "constant_logdet")


def test_every_usfad_layer_declares_constant_logdet():
    layers = _usfad_bijections()
    assert len(layers) >= 10 and LULinear in layers and AffineCoupling in layers
    undeclared = []
    for cls in layers:
        if cls in DERIVED | ABSTRACT:
            assert _declarer(cls) is None, f"{cls.__name__}: drop it from DERIVED/ABSTRACT, it declares a class value"
            continue
        owner = _declarer(cls)
        if owner is None or not isinstance(vars(owner)["constant_logdet"], bool):
            undeclared.append(f"{cls.__module__}.{cls.__qualname__}")
    assert not undeclared, f"layers without a class-level bool constant_logdet: {undeclared}"


def test_composites_derive_it_from_their_parts():
    usf = Conjugate(AdditiveCoupling(4, mlp((8,))), LULinear(4))
    affine = Conjugate(AffineCoupling(4, mlp((8,))), LULinear(4))
    assert "constant_logdet" in vars(usf) and usf.constant_logdet is True and affine.constant_logdet is False
    assert Sequential([usf, LULinear(4)]).constant_logdet is True
    assert Sequential([usf, affine]).constant_logdet is False


def test_an_abstract_base_cannot_be_instantiated():
    with pytest.raises(TypeError, match="_Coupling does not declare constant_logdet"):
        _Coupling(4, mlp((8,)))


def test_a_new_layer_that_does_not_declare_it_is_refused():
    class Undeclared(Bijection):
        def forward(self, x, context=None):
            return x, x.new_zeros(x.shape[0])

        def inverse(self, y, context=None):
            return y

    class Declared(Undeclared):
        constant_logdet = True

    class NotABool(Undeclared):
        constant_logdet = None

    with pytest.raises(TypeError, match="Undeclared does not declare constant_logdet"):
        Undeclared()
    with pytest.raises(TypeError, match="NotABool does not declare"):
        NotABool()
    y, logdet = Declared()(torch.ones(2, 3))
    assert logdet.shape == (2,) and Declared().constant_logdet is True
