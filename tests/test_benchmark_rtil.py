"""benchmarks/rtil.py end to end on tiny random priors (--smoke: run, resume check), and
--report-only on the results it left."""

from __future__ import annotations

import json
import tempfile

import pytest

from tests.conftest import load_benchmark



def test_rtil_smoke_then_report_only(tmp_path, monkeypatch, capsys):
    bench = load_benchmark("rtil")
    work = tmp_path / "smoke"
    work.mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", lambda prefix="": str(work))
    bench.main(["--smoke", "--threads", "1"])
    out = capsys.readouterr().out
    assert "resume check passed" in out
    results = work / "results" / "rtil.json"
    md = results.with_suffix(".md")
    assert results.is_file() and md.is_file()
    md.unlink()
    bench.main(["--report-only", "--out", str(results)])
    assert md.is_file() and "smoke-dcgan" in md.read_text()
    # the README's compact table: one row per (pair, method), a PSNR cell per operator from summarise()
    rows = bench.summarise(json.loads(results.read_text()))
    table = bench.compact_table(rows).splitlines()
    assert table[0].startswith("| pair, method | cs 0.05 |") and len(table) == 2 + len({(r["pair"], r["method"]) for r in rows})
    r = rows[0]
    assert f"{r['psnr']['vanilla']:.2f} -> {r['psnr']['rtil']:.2f} ({r['psnr']['diff']:+.2f} +- " in table[2]
    assert table[2].split(" | ")[1].endswith(f"n {r['n']})") and table[2] in md.read_text()

    # one image at a time gives the batched runs' results (same seeds; float rounding aside)
    single = tmp_path / "single.json"
    for part in ("2:4", "4"):  # a range first (as a second process would run), then the rest
        bench.main(["--threads", "1", "--pair", f"smoke-dcgan:{work / 'vanilla.pt'},{work / 'rtil.pt'}", "--methods", "ilo,mgan",
                    "--images", part, "--seeds", "0", "--steps-scale", "0.02", "--batch-images", "1", "--out", str(single)])
    assert [i["new_runs"] for i in json.loads(single.read_text())["invocations"]] == [40, 40]
    runs1 = json.loads(single.read_text())["runs"]
    runs = json.loads(results.read_text())["runs"]
    assert sorted(runs1) == sorted(runs) and len(runs) == 4 * 5 * 2 * 2
    assert all(runs[k]["batch"] == 4 and runs1[k]["batch"] == 1 for k in runs)
    assert [runs1[k]["psnr"] for k in sorted(runs)] == pytest.approx([runs[k]["psnr"] for k in sorted(runs)], abs=0.05)

    # --merge: two halves of the runs, as two parallel processes would leave them, fold back into one
    doc = json.loads(results.read_text())
    keys = sorted(doc["runs"])
    halves = []
    for i, part in enumerate((keys[::2], keys[1::2])):
        half = dict(doc, runs={k: doc["runs"][k] for k in part})
        halves.append(tmp_path / f"half{i}.json")
        halves[-1].write_text(json.dumps(half))
    merged = tmp_path / "merged.json"
    bench.main(["--out", str(merged), "--merge", ",".join(map(str, halves))])
    assert json.loads(merged.read_text())["runs"] == doc["runs"]
    assert (tmp_path / "merged.md").is_file()
    # a half made with another checkpoint under the same label is refused, and --out is left alone
    bad = json.loads(halves[1].read_text())
    next(iter(bad["pairs"].values()))["rtil"]["sha256"] = "0" * 64
    halves[1].write_text(json.dumps(bad))
    before = merged.read_text()
    with pytest.raises(SystemExit, match="another rtil checkpoint"):
        bench.main(["--out", str(merged), "--merge", str(halves[1])])
    assert merged.read_text() == before


@pytest.mark.parametrize("args,message", [(["--batch-images", "0"], "--batch-images must be >= 1"),
                                          (["--images", "5:3"], "--images must be N >= 1 or A:B with 0 <= A < B"),
                                          (["--images", "x"], "--images must be N or A:B")])
def test_rtil_refuses_bad_options(args, message, capsys):
    with pytest.raises(SystemExit):
        load_benchmark("rtil").main(["--pair", "a:v.pt,r.pt", *args])
    assert message in capsys.readouterr().err


def test_rtil_report_only_needs_results(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_benchmark("rtil").main(["--report-only", "--out", str(tmp_path / "none.json")])
    assert "does not exist" in capsys.readouterr().err


def test_rtil_batches_are_consecutive_runs():
    runs = load_benchmark("rtil").consecutive_runs
    assert runs([0, 1, 3, 4, 5, 9]) == [[0, 1], [3, 4, 5], [9]]
    assert runs([]) == []
