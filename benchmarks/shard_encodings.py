"""Measure lossless picture encodings for the WebDataset shards: bytes against the Zarr store,
encode and decode time per frame, which foreign readers open them without project code, and the
shard reader's frames/s with each encoding the writer has.

    .venv/bin/python benchmarks/shard_encodings.py [--tiled 6000] [--reps 3] [--quick]
                                                   [--no-foreign] [--no-reader]

Datasets, each converted once with ``convert --format zarr,wds`` (``.npy`` pictures, untimed):

- ``real``: the three real recordings of tests/data/real.tar.gz (534 frames; two recordings,
  371 frames, are the game's black export);
- ``real variant``: the one real recording with pictures (163 frames);
- ``variant tiled``: the variant's frames repeated to ``--tiled`` frames in a generated bundle
  (the 6,000-frame dataset of issue 23);
- ``generated``: ``testing.synth``'s game-like frames (``--tiled`` frames).

For each candidate the ``.npy`` shards are packed again with that picture member (the product's
tar layout: USTAR, a 512-byte header and padding to 512 bytes per member; the ``.json`` members
as they are), so every figure is of whole shard files. Columns:

- picture B/fr: mean bytes of the picture member; ``vs Zarr frames``: all picture members
  against the Zarr ``frames`` array of the same frames (zstd level 1 over 64-frame chunks);
- shards vs Zarr store: the shard files against ``zarr/`` (every Zarr object: what the issue's
  "76x" compares); ``vs Zarr + tables``: against ``zarr/``, ``rows/`` and ``frames/`` (the
  labels too, as the shards hold them); ``not picture bytes``: the share of the shards that is
  tar headers, padding and the ``.json`` members, which no picture encoding shrinks; ``vs npy``:
  against the ``.npy`` shards of the same run;
- encode / decode us/fr: one core, best of ``--reps`` passes over up to 1,000 frames; decoding as a
  reader must (NPY: a view after a header check, as the shard reader does; compressed NPY:
  decompress, then the same; images: Pillow);
- webdataset / HF: ``webdataset.WebDataset(urls).decode("rgb8")`` (its default handlers plus
  Pillow's) and Hugging Face ``datasets.load_dataset("webdataset", streaming=True)``, with no
  project code: ``exact`` when every picture comes out as the source frame's pixels.

Then (without ``--no-reader``) the shard reader itself: ``to_pytorch_dataloader(source="wds")``,
shuffled, 2 workers, batch 64, second epoch, frames/s, over the tiled dataset converted with each
encoding the writer has, in alternating order with a plain PyTorch DataLoader over the raw
frames.npy memory-mapped (its share in the same run). The machine is shared: compare ratios.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FRAME_BYTES, NPY_OFFSET, REAL_ARCHIVE  # noqa: E402

from reacture_convert.formats.wds import iter_tar_samples  # noqa: E402
from reacture_convert.formats.wds.encodings import decode_image, encode_image  # noqa: E402
from reacture_convert.ingest.npy import npy_bytes  # noqa: E402
from reacture_convert.output.storage import Output  # noqa: E402
from reacture_convert.run.batch import run_convert  # noqa: E402
from reacture_convert.run.convert import ConvertOptions  # noqa: E402
from reacture_convert.testing.synth import BundleSpec, write_bundle  # noqa: E402
from reacture_convert.writers.webdataset import WdsOptions  # noqa: E402

SHAPE = (128, 128, 3)
_HEADER = npy_bytes(np.zeros(SHAPE, np.uint8))[:-FRAME_BYTES]
VARIANT = "reacture_1795637148842"
TIMED = 1000  # frames timed per pass (spread over the dataset)


def _npy_view(data: bytes) -> np.ndarray:
    """As the shard reader decodes ``.npy``: a view of the bytes after the header check."""
    if len(data) != len(_HEADER) + FRAME_BYTES or data[: len(_HEADER)] != _HEADER:
        return np.load(io.BytesIO(data), allow_pickle=False)
    return np.frombuffer(data, np.uint8, FRAME_BYTES, len(_HEADER)).reshape(SHAPE)


def _zstd() -> Any:
    from numcodecs import Zstd

    return Zstd(level=3)


@dataclass(frozen=True)
class Candidate:
    name: str  # the picture member's extension
    label: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]
    writer: bool  # an encoding the writer has (--frame-encoding)
    whole_gzip: bool = False  # the whole shard gzip'ed (.tar.gz): not a picture encoding


CANDIDATES = [
    Candidate("npy", "npy (raw, baseline)", npy_bytes, _npy_view, True),
    Candidate(
        "png",
        "png (zlib 6)",
        lambda f: encode_image(f, "png"),
        lambda b: decode_image(b, "png"),
        True,
    ),
    Candidate(
        "webp",
        "webp (lossless, method 4)",
        lambda f: encode_image(f, "webp"),
        lambda b: decode_image(b, "webp"),
        True,
    ),
    Candidate(
        "npy.gz",
        "npy.gz (gzip 6)",
        lambda f: gzip.compress(npy_bytes(f), 6, mtime=0),
        lambda b: _npy_view(gzip.decompress(b)),
        False,
    ),
    Candidate(
        "npy.zst",
        "npy.zst (zstd 3)",
        lambda f: bytes(_zstd().encode(npy_bytes(f))),
        lambda b: _npy_view(bytes(_zstd().decode(b))),
        False,
    ),
    Candidate(
        "npy.xz",
        "npy.xz (xz preset 1)",
        lambda f: lzma.compress(npy_bytes(f), preset=1),
        lambda b: _npy_view(lzma.decompress(b)),
        False,
    ),
    # For comparison, not per frame: what compressing the whole shard stream would add (the
    # tar headers and the .json members compress too). webdataset and datasets open .tar.gz.
    Candidate("npy", "npy, whole shard .tar.gz", npy_bytes, _npy_view, False, True),
    Candidate(
        "webp",
        "webp, whole shard .tar.gz",
        lambda f: encode_image(f, "webp"),
        lambda b: decode_image(b, "webp"),
        False,
        True,
    ),
]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def shard_urls(out: Path) -> list[Path]:
    index = json.loads((out / "wds" / "index.json").read_text())
    return [out / "wds" / s["url"] for s in index["shards"]]


def iter_samples(out: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    for url in shard_urls(out):
        with open(url, "rb") as f:
            yield from iter_tar_samples(f, str(url))


def convert(sources: list[Path], out: Path, encoding: str = "npy") -> Path:
    shutil.rmtree(out, ignore_errors=True)
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(encoding=encoding))
    summary = run_convert([str(p) for p in sources], Output(str(out)), options, scheduler="sync")
    assert summary.ok, summary.counts
    return out


def tiled_bundle(folder: Path, frames: np.ndarray, n: int, seed: int) -> Path:
    """A generated bundle of ``n`` frames whose frames.npy holds ``frames`` repeated (or the
    generator's own frames when ``frames`` is empty)."""
    prefix = f"reacture_{1795700000000 + seed * 1000 + n}"
    write_bundle(folder / prefix, BundleSpec(n_frames=n, seed=seed, prefix=prefix))
    if len(frames):
        path = folder / prefix / f"{prefix}_frames.npy"
        reps = -(-n // len(frames))
        tiled = np.concatenate([frames] * reps)[:n]
        with open(path, "r+b") as f:
            f.seek(NPY_OFFSET)
            f.write(np.ascontiguousarray(tiled).tobytes())
    return folder / prefix


def repack(npy_out: Path, cand: Candidate, dest: Path) -> tuple[list[Path], int, float, float]:
    """The ``.npy`` shards packed again with ``cand``'s pictures: the files, the picture bytes,
    and the seconds the whole-shard gzip took to write and to read back (0 without)."""
    dest.mkdir(parents=True, exist_ok=True)
    urls: list[Path] = []
    pictures = 0
    for k, url in enumerate(shard_urls(npy_out)):
        path = dest / f"shard-{k:06d}.tar"
        with open(url, "rb") as src, tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
            for key, members in iter_tar_samples(src, str(url)):
                picture = cand.encode(_npy_view(members["npy"]))
                pictures += len(picture)
                for name, data in (("json", members["json"]), (cand.name, picture)):
                    info = tarfile.TarInfo(f"{key}.{name}")
                    info.size, info.mode, info.mtime = len(data), 0o644, 0
                    tf.addfile(info, io.BytesIO(data))
        urls.append(path)
    if not cand.whole_gzip:
        return urls, pictures, 0.0, 0.0
    zipped, t_write, t_read = [], 0.0, 0.0
    for path in urls:
        gz = path.with_suffix(".tar.gz")
        t0 = time.perf_counter()
        with open(path, "rb") as src, gzip.GzipFile(gz, "wb", 6, mtime=0) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        t1 = time.perf_counter()
        with gzip.open(gz, "rb") as f:
            while f.read(1 << 20):
                pass
        t_read += time.perf_counter() - t1
        t_write += t1 - t0
        path.unlink()
        zipped.append(gz)
    return zipped, pictures, t_write, t_read


def best_pass(fn: Callable[[Any], Any], items: list[Any], reps: int) -> float:
    """Seconds per item of the fastest of ``reps`` passes over ``items``."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - t0)
    return best / max(1, len(items))


def foreign_webdataset(urls: list[Path], cand: Candidate, want: dict[str, np.ndarray]) -> str:
    try:
        import webdataset
    except ImportError:
        return "not installed"
    try:
        ds = webdataset.WebDataset([str(u) for u in urls], shardshuffle=False, empty_check=False)
        got = 0
        for s in ds.decode("rgb8"):
            value = s.get(cand.name)
            if not isinstance(value, np.ndarray):
                return f"no ({type(value).__name__})"
            if value.dtype != np.uint8 or not np.array_equal(value, want[s["__key__"]]):
                return "no (pixels differ)"
            got += 1
        return "exact" if got == len(want) else f"no ({got} of {len(want)})"
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        return f"no ({type(e).__name__})"


def foreign_hf(urls: list[Path], cand: Candidate, want: dict[str, np.ndarray], cache: str) -> str:
    try:
        import datasets
    except ImportError:
        return "not installed"
    try:
        ds = datasets.load_dataset(
            "webdataset",
            data_files={"train": [str(u) for u in urls]},
            split="train",
            streaming=True,
            cache_dir=cache,
        )
        got = 0
        for s in ds:
            value = s.get(cand.name)
            if isinstance(value, bytes | None):
                return f"no ({type(value).__name__})"
            arr = np.asarray(value, dtype=np.uint8)
            if not np.array_equal(arr, want[s["__key__"]]):
                return "no (pixels differ)"
            got += 1
        return "exact" if got == len(want) else f"no ({got} of {len(want)})"
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        return f"no ({type(e).__name__})"


def measure_dataset(
    name: str, npy_out: Path, work: Path, reps: int, foreign: bool
) -> list[dict[str, Any]]:
    frames_zarr = sum(du(p / "frames") for p in (npy_out / "zarr").iterdir())
    zarr_store = du(npy_out / "zarr")
    with_tables = zarr_store + du(npy_out / "rows") + du(npy_out / "frames")
    samples = list(iter_samples(npy_out))
    frames = [np.array(_npy_view(m["npy"])) for _, m in samples]
    want = {k: f for (k, _), f in zip(samples, frames, strict=True)}
    npy_shards = sum(p.stat().st_size for p in shard_urls(npy_out))
    print(
        f"  {name}: {len(frames):,} frames, Zarr frames {frames_zarr:,} B, Zarr store "
        f"{zarr_store:,} B, npy shards {npy_shards:,} B",
        flush=True,
    )
    rows = []
    for cand in CANDIDATES:
        urls, pictures, t_zip, t_unzip = repack(
            npy_out, cand, work / name.replace(" ", "-") / cand.name
        )
        shards = sum(p.stat().st_size for p in urls)
        encoded = [cand.encode(f) for f in frames]
        assert all(np.array_equal(cand.decode(b), f) for b, f in zip(encoded, frames, strict=True))
        timed = np.linspace(0, len(frames) - 1, min(len(frames), TIMED)).astype(int).tolist()
        row = {
            "dataset": name,
            "candidate": cand.label,
            "frames": len(frames),
            "picture_bytes": pictures / len(frames),
            "vs_zarr_frames": pictures / frames_zarr,
            "shard_bytes": shards,
            "vs_zarr_store": shards / zarr_store,
            "vs_zarr_tables": shards / with_tables,
            "json_tar_share": None if cand.whole_gzip else 1 - pictures / shards,
            "vs_npy": shards / npy_shards,
            "encode_us": 1e6
            * (best_pass(cand.encode, [frames[i] for i in timed], reps) + t_zip / len(frames)),
            "decode_us": 1e6
            * (best_pass(cand.decode, [encoded[i] for i in timed], reps) + t_unzip / len(frames)),
        }
        if foreign:
            row["webdataset"] = foreign_webdataset(urls, cand, want)
            row["hf"] = foreign_hf(urls, cand, want, str(work / "hf-cache"))
        rows.append(row)
        print(
            f"    {cand.label}: {row['picture_bytes']:,.0f} B/fr, shards "
            f"{row['vs_zarr_store']:.2f}x Zarr, enc {row['encode_us']:.0f} us, dec "
            f"{row['decode_us']:.0f} us"
            + (f", wds {row['webdataset']}, hf {row['hf']}" if foreign else ""),
            flush=True,
        )
        shutil.rmtree(work / name.replace(" ", "-") / cand.name)
    return rows


def table(rows: list[dict[str, Any]], foreign: bool) -> str:
    head = (
        "| dataset | encoding | picture B/fr | pictures vs Zarr frames | shards vs Zarr store "
        "| shards vs Zarr + tables | not picture bytes | shards vs npy | encode us/fr "
        "| decode us/fr |"
    )
    sep = "|---|---|---|---|---|---|---|---|---|---|"
    if foreign:
        head += " webdataset `.decode('rgb8')` | HF `datasets` webdataset |"
        sep += "---|---|"
    lines = [head, sep]
    for r in rows:
        share = "-" if r["json_tar_share"] is None else f"{100 * r['json_tar_share']:.0f} %"
        line = (
            f"| {r['dataset']} ({r['frames']:,} fr) | {r['candidate']} | "
            f"{r['picture_bytes']:,.0f} | {r['vs_zarr_frames']:.2f}x | {r['vs_zarr_store']:.2f}x "
            f"| {r['vs_zarr_tables']:.2f}x | {share} "
            f"| {r['vs_npy']:.3f}x | {r['encode_us']:,.0f} | {r['decode_us']:,.0f} |"
        )
        if foreign:
            line += f" {r['webdataset']} | {r['hf']} |"
        lines.append(line)
    return "\n".join(lines)


def child_reader(out_dirs: dict[str, str], frames_npy: str, reps: int) -> dict[str, list[float]]:
    """Frames/s of the shard reader per encoding and of the plain mmap baseline, alternating."""
    from readers import BATCH, WORKERS, RawFrames
    from torch.utils.data import DataLoader

    from reacture_convert.read.torch import to_pytorch_dataloader

    n = (os.path.getsize(frames_npy) - NPY_OFFSET) // FRAME_BYTES
    common: dict[str, Any] = {"num_workers": WORKERS, "persistent_workers": True}

    def second_epoch(loader: Any) -> float:
        for _ in loader:
            pass
        t0 = time.perf_counter()
        count = sum(len(batch["frame"]) for batch in loader)
        return count / (time.perf_counter() - t0)

    fps: dict[str, list[float]] = {k: [] for k in ["mmap", *out_dirs]}
    for r in range(reps):
        fps["mmap"].append(
            second_epoch(
                DataLoader(RawFrames(frames_npy, n), batch_size=BATCH, shuffle=True, **common)
            )
        )
        for enc, out in out_dirs.items():
            loader = to_pytorch_dataloader(out, BATCH, True, source="wds", seed=r, **common)
            fps[enc].append(second_epoch(loader))
        print(
            f"    reader #{r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} fr/s" for k, v in fps.items()),
            flush=True,
        )
    return fps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiled", type=int, default=6000, help="frames of the tiled datasets")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny inputs: a smoke test")
    ap.add_argument("--no-foreign", dest="foreign", action="store_false")
    ap.add_argument("--no-reader", dest="reader", action="store_false")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument(
        "--candidates", default=None, help="comma-separated labels' first words, e.g. npy,webp"
    )
    args = ap.parse_args()
    if args.quick:
        args.tiled, args.reps = 48, 1
    if args.candidates:
        wanted = set(args.candidates.split(","))
        CANDIDATES[:] = [c for c in CANDIDATES if c.label.split()[0].rstrip(",") in wanted]
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="reacture-enc-"))
    try:
        with tarfile.open(REAL_ARCHIVE) as tar:
            tar.extractall(work / "src", filter="data")
        real = sorted(m.parent for m in (work / "src" / "real").rglob("*_metadata.json"))
        variant = next(p for p in real if p.name == VARIANT)
        variant_frames = np.fromfile(
            variant / f"{VARIANT}_frames.npy", np.uint8, offset=NPY_OFFSET
        ).reshape(-1, *SHAPE)
        tiled = tiled_bundle(work / "src" / "tiled", variant_frames, args.tiled, 1)
        generated = tiled_bundle(work / "src" / "generated", variant_frames[:0], args.tiled, 2)
        datasets_ = {
            "real": real[:1] if args.quick else real,
            "real variant": [variant],
            "variant tiled": [tiled],
            "generated": [generated],
        }
        rows: list[dict[str, Any]] = []
        for name, sources in datasets_.items():
            out = convert(sources, work / "out" / name.replace(" ", "-"))
            rows += measure_dataset(name, out, work / "repack", args.reps, args.foreign)
        print()
        print(table(rows, args.foreign))
        if args.reader:
            outs = {
                enc: str(convert([tiled], work / "reader" / enc, enc))
                for enc in ("npy", "webp", "png")
            }
            frames_npy = str(tiled / f"{tiled.name}_frames.npy")
            fps = child_reader(outs, frames_npy, args.reps)
            base = statistics.median(fps["mmap"])
            print()
            print(
                f"| shard reader, variant tiled ({args.tiled:,} fr), shuffled, 2 workers, batch 64 "
                "| frames/s (median) | vs npy | vs plain PyTorch over mmap | shards MB |"
            )
            print("|---|---|---|---|---|")
            npy = statistics.median(fps["npy"])
            for enc in ("mmap", *outs):
                med = statistics.median(fps[enc])
                size = (
                    sum(p.stat().st_size for p in shard_urls(Path(outs[enc]))) / 1e6
                    if enc in outs
                    else float("nan")
                )
                label = "plain PyTorch over mmap" if enc == "mmap" else f"`--frame-encoding {enc}`"
                print(
                    f"| {label} | {med:,.0f} [{min(fps[enc]):,.0f}-{max(fps[enc]):,.0f}] "
                    f"| {med / npy:.2f}x | {100 * med / base:.0f} % | {size:,.2f} |"
                )
            rows.append({"reader_fps": fps})
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
