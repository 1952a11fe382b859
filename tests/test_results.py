import json

import numpy as np

from edge.core.state import WriterState
from edge.inference.decision import Defect
from edge.sinks.results import OverlayStore, ResultsLog


def test_results_log_rotates_by_size_and_keeps_every_record(tmp_path):
    log = ResultsLog(tmp_path / "r.jsonl", max_bytes=400, backups=10)
    for i in range(40):
        log.write({"seq": i, "pad": "x" * 20})
        assert log.drain()
        on_disk = (tmp_path / "r.jsonl").read_text() or (tmp_path / "r.jsonl.1").read_text()
        assert on_disk.splitlines()[-1] == f'{{"seq":{i},"pad":"{"x" * 20}"}}'  # flushed per record
    log.close()
    files = [tmp_path / f"r.jsonl.{i}" for i in range(10, 0, -1)] + [tmp_path / "r.jsonl"]
    seqs = [json.loads(line)["seq"] for f in files if f.exists() for line in f.read_text().splitlines()]
    assert seqs == list(range(40))
    assert (tmp_path / "r.jsonl.1").stat().st_size >= 400
    assert log.state() == WriterState(ok=True, error=None, buffered=0, written=40, lost=0)


def test_results_log_keeps_only_the_backups_asked_for(tmp_path):
    log = ResultsLog(tmp_path / "r.jsonl", max_bytes=100, backups=2)
    for i in range(50):
        log.write({"seq": i, "pad": "x" * 40})
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]


def test_overlays_stay_within_the_quota_oldest_deleted_first(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # noise: JPEGs of similar size
    mask = np.zeros((120, 160), bool)
    mask[10:30, 10:40] = True
    defect = Defect((10, 10, 30, 20), 600, None, 0.9, 1.0, (25.0, 20.0), True)
    store = OverlayStore(tmp_path / "o", quota_bytes=10**9, threshold=0.5)
    size = store.save(image, mask, [defect], "first").stat().st_size
    store = OverlayStore(tmp_path / "o", quota_bytes=int(size * 3.5), threshold=0.5)
    for i in range(10):
        store.save(image, mask, [defect], f"{i:03d}")
    names = sorted(p.stem for p in (tmp_path / "o").glob("*.jpg"))
    assert names == ["007", "008", "009"]
    assert sum(p.stat().st_size for p in (tmp_path / "o").glob("*.jpg")) <= size * 3.5
