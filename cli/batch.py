"""Batch plumbing for `recon reconstruct`: input expansion, sharding, staged output folders,
resume checks and the summary files."""

from __future__ import annotations

import csv
import glob
import io
import json
from pathlib import Path
from typing import List, Optional, Tuple

from recon_core.errors import BadInput

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm", ".pbm"}
SUMMARY_SCHEMA = 1
def expand_inputs(items: List[str], list_file: Optional[Path]) -> Tuple[List[Path], bool]:
    """Expand files, folders (their image files, sorted), glob patterns and a --list file (one
    path per line, '#' comments) into an ordered, de-duplicated list. Returns (paths, is_batch):
    a batch unless exactly one plain file was given."""
    paths: List[Path] = []
    batch = list_file is not None or len(items) > 1
    for item in items:
        p = Path(item)
        if p.is_dir():
            batch = True
            paths += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
        elif not p.exists() and any(ch in item for ch in "*?["):
            batch = True
            matches = sorted(Path(m) for m in glob.glob(item))
            if not matches:
                raise BadInput(f"no files match '{item}'")
            paths += matches
        else:
            paths.append(p)
    if list_file is not None:
        try:
            lines = Path(list_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"cannot read --list file '{list_file}': {getattr(e, 'strerror', None) or e}") from None
        paths += [Path(s.strip()) for s in lines if s.strip() and not s.strip().startswith("#")]
    seen, out = set(), []
    for p in paths:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    if batch and not out:
        raise BadInput("the batch is empty: no image files found")
    return out, batch


def parse_shard(shard: Optional[str]) -> Optional[Tuple[int, int]]:
    """'K/N' -> (K, N) with 1 <= K <= N; None passes through."""
    if shard is None:
        return None
    try:
        k, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise BadInput(f"--shard must look like K/N (e.g. 2/8), got '{shard}'") from None
    if not 1 <= k <= n:
        raise BadInput(f"--shard K/N needs 1 <= K <= N, got '{shard}'")
    return k, n


def output_names(paths: List[Path]) -> List[str]:
    """One folder name per input (its stem; -2, -3... on collisions), fixed before sharding so
    every shard names an image the same way."""
    names, used = [], {}
    for p in paths:
        stem = p.stem or "image"
        n = used.get(stem, 0) + 1
        used[stem] = n
        names.append(stem if n == 1 else f"{stem}-{n}")
    return names


def complete_record(out: Path, identity: dict, image: Optional[Path] = None) -> Tuple[Optional[dict], Optional[str]]:
    """(record, None) if ``out`` holds a complete result made with the same settings (its
    metrics.json identity hash equals ``identity``'s) from the same input (the image file's
    sha256, when the record has one), (None, reason) if it holds a complete one made
    differently, (None, None) if incomplete."""
    from recon_core.pipeline import file_digest, identity_diff

    mpath = out / "metrics.json"
    try:
        rec = json.loads(mpath.read_text())
        outputs = rec["outputs"]
        ok = all((out / name).is_file() for key, name in outputs.items() if key != "metrics")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    if not ok:
        return None, None
    diff = identity_diff(rec.get("identity"), identity)
    stored = (rec.get("image") or {}).get("sha256") if isinstance(rec.get("image"), dict) else None
    if image is not None and stored is not None and stored != file_digest(image):
        diff.append("the input image changed")
    if diff:
        return None, f"existing outputs in {out} were made with other settings ({', '.join(diff)}); use --force to overwrite"
    return rec, None


def summary_paths(root: Path, shard: Optional[Tuple[int, int]]) -> Tuple[Path, Path]:
    """The batch's summary files: root/summary.{json,csv}, or summary-shard-K-of-N.* for a shard."""
    stem = "summary" if shard is None else f"summary-shard-{shard[0]}-of-{shard[1]}"
    return root / f"{stem}.json", root / f"{stem}.csv"


SUMMARY_METRICS = ("psnr", "ssim", "lpips", "residual")


def metric_stats(rows: List[dict]) -> dict:
    """Per metric over the images with a finite value (ok or skipped): n, mean and sample std
    (std null for fewer than 2 images; a metric no image has is left out)."""
    import math
    import statistics

    out = {}
    for k in SUMMARY_METRICS:
        v = [float(r["metrics"][k]) for r in rows if (r.get("metrics") or {}).get(k) is not None
             and math.isfinite(float(r["metrics"][k]))]
        if v:
            out[k] = {"n": len(v), "mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else None}
    return out


def write_summary(root: Path, rows: List[dict], shard: Optional[Tuple[int, int]], interrupted: bool) -> Tuple[Path, Path]:
    """summary.json and summary.csv (or summary-shard-K-of-N.*) in ``root``, atomically."""
    from recon_core.images import atomic_write_text
    from recon_core.io import dumps as strict_dumps

    jname, cname = summary_paths(root, shard)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    doc = {"schema_version": SUMMARY_SCHEMA, "interrupted": interrupted, "shard": list(shard) if shard else None,
           "counts": counts, "stats": metric_stats(rows), "images": rows}
    root.mkdir(parents=True, exist_ok=True)
    jpath = atomic_write_text(jname, strict_dumps(doc, indent=2) + "\n")
    buf = io.StringIO()
    cols = ["input", "out", "status", "reason", "psnr", "ssim", "lpips", "residual", "time_s"]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        m = r.get("metrics") or {}
        w.writerow({"input": r["input"], "out": r["out"], "status": r["status"], "reason": r.get("reason") or "",
                    "psnr": m.get("psnr"), "ssim": m.get("ssim"), "lpips": m.get("lpips"), "residual": m.get("residual"),
                    "time_s": r.get("time_s")})
    cpath = atomic_write_text(cname, buf.getvalue())
    return jpath, cpath
