"""A static HTML report to *look at* sessions: frames, timelines, cadence and findings.

``write_report`` reads either a converted dataset (``OUT`` with ``catalog.parquet``: Zarr frames
and timestamps, the rows Parquet, the catalog's findings) or unconverted bundles (a folder, file,
archive, glob or URL: found with ``discover``, judged with ``validate_bundle`` and read with the
streaming readers, reading only the frames it shows). It writes, into a local ``REPORT_DIR``:

- ``index.html``: every session with its catalog facts (status, frames, rows, duration,
  environment, blank frames, counts of findings);
- ``<session>.html`` per session, and its pictures in ``<session>_files/``: a strip of
  ``N_THUMBS`` frames at regular intervals, flipped right way up (frames are stored bottom row
  first) and enlarged 2x with nearest neighbour; a timeline (battery/health/fuel/damage, speed,
  held keys, event and action markers, pauses shaded); the frame-interval histogram; the
  validation findings.

The pages need no server and no network: every picture is a PNG written beside them and linked
relatively, the style sheet and script are inlined; all text from the data is escaped.

Modules: ``data`` (what a page shows), ``converted`` and ``bundles`` (reading it from a dataset
or from bundles), ``timeline`` (rows as time series, markers, pauses, gaps), ``plots`` (the PNG
pictures), ``html`` (the pages, with ``assets/``), ``write`` (``write_report``).
"""

from reacture_convert.report.plots import CADENCE_SIZE, N_THUMBS, THUMB_SIZE, TIMELINE_SIZE
from reacture_convert.report.timeline import GAP_FACTOR
from reacture_convert.report.write import ReportResult, SessionPage, write_report

__all__ = [
    "N_THUMBS",
    "THUMB_SIZE",
    "TIMELINE_SIZE",
    "CADENCE_SIZE",
    "GAP_FACTOR",
    "SessionPage",
    "ReportResult",
    "write_report",
]
