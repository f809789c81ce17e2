"""The package's entry points (``reacture_convert.__all__``): each is there, the object of its
home module, imported only when first used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import reacture_convert

NAMES = sorted(set(reacture_convert.__all__) - {"__version__"})


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_point_is_the_object_it_names(name: str) -> None:
    value = getattr(reacture_convert, name)
    assert value.__name__ == name
    assert getattr(sys.modules[value.__module__], name) is value


def test_dir_lists_the_entry_points_and_others_are_refused() -> None:
    assert dir(reacture_convert) == sorted(reacture_convert.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        reacture_convert.nothing  # noqa: B018


def test_importing_the_package_imports_no_entry_point() -> None:
    probe = "import json, sys, reacture_convert; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = {m for m in json.loads(done.stdout) if m.startswith("reacture_convert.")}
    assert not loaded, loaded
