"""Generated bundles converted for a test: written under ``root/in``, converted to ``root/out``
on the sync scheduler."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reacture_convert.output.storage import Output
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec, write_bundle


def convert_synth(root: Path, specs: Iterable[BundleSpec], options: ConvertOptions) -> Path:
    """``root/out``: the bundles ``specs`` (written to ``root/in``) converted with ``options``."""
    for spec in specs:
        write_bundle(root / "in" / spec.prefix, spec)
    run_convert([str(root / "in")], Output(str(root / "out")), options, scheduler="sync")
    return root / "out"
