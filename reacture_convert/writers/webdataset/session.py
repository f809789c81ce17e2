"""The ``wds`` format of one session, as the converter drives it (``writers.base``): the
session's samples written into its parts in staging while validation reads the bundle, and
handed to the driver for the shard merge once complete. ``open_samples`` is the format's entry
in the writer registry."""

from __future__ import annotations

from collections.abc import Mapping

from reacture_convert.ingest.validate import Report
from reacture_convert.output.layout import staged_session_tar
from reacture_convert.writers.base import SessionContext, Written
from reacture_convert.writers.webdataset.options import WdsOptions
from reacture_convert.writers.webdataset.samples import SessionSamples
from reacture_convert.writers.webdataset.scratch import parts_output

__all__ = ["StagedSamples", "open_samples"]


class StagedSamples(SessionSamples):
    """``SessionSamples`` as a ``FormatWriter``: complete, they wait for the merge."""

    def complete(self, report: Report, hashes: Mapping[str, str]) -> Written:
        return Written(session_tar=self.finish(report))


def open_samples(ctx: SessionContext, options: WdsOptions) -> StagedSamples:
    """The ``wds`` format's writer of a session: its sample tar's parts, inside the run's
    staging (``output.layout.staged_session_tar``) in OUT or in ``options.parts_dir``."""
    where = parts_output(ctx.out, options)
    return StagedSamples(
        ctx.session, where, where.path(staged_session_tar(ctx.run_id, ctx.session)), options
    )
