"""Compatibility name for ``reacture_convert.read.torch`` (the PyTorch readers)."""

from reacture_convert.read.torch import *  # noqa: F403
from reacture_convert.read.torch import __all__  # noqa: F401
