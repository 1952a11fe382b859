"""`station bench`: speed and accuracy of model files on this device, for reports two devices can share.

    station bench --model m_int8.tflite --model m_float32.tflite --data DIR --threads 1,2 --json pi5.json
    station bench --compare pi5.json jetson.json

Every model x runtime x thread count runs in a fresh process (so each has its own load time and
peak memory, as TFLite's benchmark_model reports them): load ("init"), first invoke, warm-up
average, then `--runs` timed invokes (min, p50, p90, p99, mean, std). With `--data` it also runs
every image end to end as the daemon would (read, pre-process, invoke, threshold and connected
components) for images per second and, where the folder has masks, the same Dice, IoU and
image-level rates as `station eval`. `.keras` models run when Keras is installed (the train
extra); runtimes that are not installed are skipped with a note.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import queue as queues
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.core.card import ModelCard
from edge.core.config import MIN_AREA_PX
from edge.core.device import device_facts, memory_mb, peak_gmac_s
from edge.core.errors import BadInput
from edge.core.images import list_images
from edge.evaluation.dataset import Sample, list_samples, read_image, read_mask
from edge.evaluation.metrics import evaluate_maps
from edge.inference.decision import Rules, find_defects
from edge.inference.models import resolve
from edge.inference.predictors import load_model
from edge.inference.runtime import (
    OTHER_RUNTIMES,
    RUNTIMES,
    multiply_accumulates,
    runtime_installed,
    runtime_version,
)
from edge.inference.segment import probability_map


@dataclass(frozen=True)
class Job:
    """One measurement: a model file on one runtime with one thread count."""

    model: str
    runtime: str  # a TFLite runtime name, or "keras"
    threads: int
    warmup: int
    runs: int
    samples: tuple[Sample, ...] = ()
    with_masks: bool = False
    min_area_px: int = MIN_AREA_PX


def _load(job: Job):
    """(predict, one model-sized input, card) for the job's model on its runtime."""
    if job.runtime == "keras":
        # read by TensorFlow when the backend starts (this is a fresh process); other backends ignore them
        os.environ.update(TF_NUM_INTRAOP_THREADS=str(job.threads), TF_NUM_INTEROP_THREADS="1")
    loaded = load_model(job.model, job.threads, None if job.runtime == "keras" else job.runtime)
    spec = loaded.card.input
    shape = loaded.tflite.input["shape"] if loaded.tflite else (1, spec.height, spec.width, spec.channels)
    return loaded.predict, np.zeros(shape, np.uint8), loaded.card


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000


def measure(job: Job) -> dict:
    """The figures of one job, measured in this process (run it in a fresh one)."""
    rss_start = memory_mb()
    start = time.perf_counter()
    predict, x, card = _load(job)
    result = {"init_ms": (time.perf_counter() - start) * 1000, "rss_init_mb": memory_mb() - rss_start}
    result["first_ms"] = _timed(predict, x)
    warm = [_timed(predict, x) for _ in range(job.warmup)]
    runs = np.array([_timed(predict, x) for _ in range(job.runs)])
    result["warmup_avg_ms"] = float(np.mean(warm)) if warm else None
    result["latencies_ms"] = [round(float(v), 4) for v in runs]
    result.update({"min_ms": float(runs.min()), "p50_ms": float(np.percentile(runs, 50)),
                   "p90_ms": float(np.percentile(runs, 90)), "p99_ms": float(np.percentile(runs, 99)),
                   "avg_ms": float(runs.mean()), "std_ms": float(runs.std())})
    if job.model.endswith(".tflite"):
        result["gmac"] = multiply_accumulates(job.model) * len(x) / 1e9  # x: the file's own input batch
        result["gmac_s"] = result["gmac"] / result["p50_ms"] * 1000
    if job.samples:
        result.update(_end_to_end(job, predict, card))
    result["rss_start_mb"] = rss_start
    result["rss_peak_mb"] = memory_mb("VmHWM")
    return result


def _end_to_end(job: Job, predict, card: ModelCard) -> dict:
    """Every image read, pre-processed, invoked and judged as the daemon does; metrics against masks."""
    rules = Rules(card.threshold, job.min_area_px)
    probs, masks, skipped, seconds = [], [], [], 0.0
    for sample in job.samples:
        start = time.perf_counter()
        try:
            image = read_image(sample.image, card.input.channels)
        except BadInput as exc:
            skipped.append([str(sample.image), str(exc)])
            continue
        prob = probability_map(image, predict, card)
        find_defects(prob, rules)
        seconds += time.perf_counter() - start
        probs.append(prob)
        if job.with_masks:
            masks.append(read_mask(sample, image.shape[:2]))
    if not probs:
        raise BadInput(f"none of the {len(job.samples)} images could be read")
    result = {"images_per_s": len(probs) / seconds, "skipped": skipped}
    if job.with_masks:
        result["accuracy"] = evaluate_maps(probs, masks, card.threshold, job.min_area_px)
    return result


def _measure_in_child(job: Job, queue) -> None:
    try:
        queue.put(("ok", measure(job)))
    except BadInput as exc:
        queue.put(("bad", str(exc)))
    except Exception as exc:  # reported as the job's failure, the other jobs go on
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _outcome(process, queue) -> tuple[str, object]:
    """The child's message, or an error naming how it died (a runtime that crashes, or is killed)."""
    while True:
        try:
            return queue.get(timeout=1)
        except queues.Empty:
            if not process.is_alive() and queue.empty():  # a child that ends normally has flushed its message
                code = process.exitcode or 0
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                return "error", f"the measuring process died ({how})"


def run_job(job: Job) -> dict:
    """`measure(job)` in a fresh process; BadInput passes through, other failures become a note."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure_in_child, args=(job, queue))
    process.start()
    try:
        kind, value = _outcome(process, queue)
    finally:
        process.join()
    if kind == "bad":
        raise BadInput(value)
    return {"error": value} if kind == "error" else value


def bench_samples(data: str | Path, split: str) -> tuple[list[Sample], bool]:
    """The images to run end to end and whether they have masks.

    A folder dataset with masks gives its `split` (as `station eval` does); a dataset without masks,
    or a plain folder of images, gives every image. Masks for some images only are BadInput.
    """
    root = Path(data)
    if root.is_dir() and not (root / "images").is_dir():
        images = list_images(root, hint=", or images/ and masks/")
        return [Sample(p.stem, p, None, "test") for p in images], False
    samples = list_samples(root)
    unlabelled = [s for s in samples if s.label is None]
    if len(unlabelled) == len(samples):
        return samples, False
    if unlabelled:
        raise BadInput(f"{unlabelled[0].image}: no mask, though other images have one "
                       f"({len(unlabelled)} of {len(samples)} images lack masks/<id>.png)")
    return list_samples(root, split), True


def _check_masks(samples: list[Sample], channels: int) -> None:
    """BadInput naming the first mask that does not fit its image (unreadable images are skipped later)."""
    for sample in samples:
        try:
            image = read_image(sample.image, channels)
        except BadInput:
            continue
        read_mask(sample, image.shape[:2])


def plan(models: list[str], runtimes: list[str], threads: list[int]) -> tuple[list[tuple[str, str, int]], list[str]]:
    """The (model, runtime, threads) runs to make, and notes on what is skipped and why."""
    notes, runs = [], []
    installed = {}
    for name in runtimes:
        if name not in RUNTIMES and name not in OTHER_RUNTIMES:
            raise BadInput(f"--runtime: unknown runtime {name!r} (expected {', '.join([*RUNTIMES, *OTHER_RUNTIMES])})")
        installed[name] = runtime_installed(name)
        if not installed[name]:
            notes.append(f"runtime {name}: not installed, skipped")
    for model in models:
        path = Path(model)
        if not path.is_file():
            raise BadInput(f"{path}: model file not found")
        ModelCard.load(path)  # BadInput now, not in a child
        if path.suffix == ".keras":
            if importlib.util.find_spec("keras") is None:
                notes.append(f"{path.name}: Keras is not installed (pip install .[train]), skipped")
                continue
            runs += [(model, "keras", t) for t in threads]
        elif path.suffix == ".tflite":
            runs += [(model, name, t) for name in runtimes if installed[name] for t in threads]
        else:
            raise BadInput(f"{path}: unsupported model file (expected .tflite or .keras)")
    return runs, notes


def _reference(rows: list[dict]) -> dict | None:
    """The accuracy of the first float model measured: the base of the other models' deltas."""
    return next((r["accuracy"] for r in rows if r.get("accuracy") and r["precision"] != "int8"), None)


def _precision(path: Path) -> str:
    """int8, float16 or float32, from the card ("tflite-int8", ...; a .keras model is float32)."""
    return ModelCard.load(path).format.removeprefix("tflite-").replace("keras", "float32")


def bench(models: list[str], data: str | None = None, split: str = "test", threads: list[int] | None = None,
          runtimes: list[str] | None = None, warmup: int = 5, runs: int = 50, min_area_px: int = MIN_AREA_PX,
          progress: bool = True) -> dict:
    """The whole benchmark: device facts, one row per model x runtime x threads, notes."""
    threads = threads or [1, 2]
    models = [str(resolve(m)) for m in models]
    runtimes = runtimes or [*RUNTIMES, *OTHER_RUNTIMES]
    samples, with_masks = bench_samples(data, split) if data else ([], False)
    planned, notes = plan(models, runtimes, threads)
    if with_masks:
        for model in dict.fromkeys(m for m, _, _ in planned):
            _check_masks(samples, ModelCard.load(model).input.channels)
    peak = peak_gmac_s()  # before the jobs, on the quiet machine
    rows = []
    for model, runtime, count in tqdm(planned, desc="bench", disable=not progress):
        job = Job(model, runtime, count, warmup, runs, tuple(samples), with_masks, min_area_px)
        row = {"model": model, "name": Path(model).name, "precision": _precision(Path(model)), "runtime": runtime,
               "version": keras_version() if runtime == "keras" else runtime_version(runtime), "threads": count,
               "size_mb": Path(model).stat().st_size / 2**20, **run_job(job)}
        if "error" in row:
            notes.append(f"{row['name']} on {runtime}, {count} threads: failed ({row['error']})")
        rows.append(row)
    for row in rows:
        for image, reason in row.get("skipped", []):
            note = f"skipped {image}: {reason}"
            if note not in notes:
                notes.append(note)
    ref = _reference(rows)
    for row in rows:
        if row.get("accuracy") and ref and row["accuracy"] is not ref:
            row["vs_float"] = {k: row["accuracy"][k] - ref[k] for k in ("dice", "iou", "image_recall")
                               if row["accuracy"][k] is not None and ref[k] is not None}
    return {"device": device_facts(), "peak_gmac_s": peak, "data": str(data) if data else None, "split": split if with_masks else None,
            "images": len(samples), "warmup": warmup, "runs": runs, "rows": rows, "notes": notes,
            "time": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def keras_version() -> str:
    import keras

    return f"{keras.__version__} ({keras.backend.backend()})"


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = ("model", "runtime", "thr", "size MB", "init ms", "first ms", "warmup ms", "min", "p50", "p90", "p99",
           "avg ms", "GMAC/s", "img/s", "RSS MB", "Dice", "IoU", "recall", "FRR", "dDice")


def table_rows(report: dict) -> list[list[str]]:
    """The report's rows as table cells, in COLUMNS order."""
    cells = []
    for r in report["rows"]:
        if "error" in r:
            cells.append([r["name"], r["runtime"], str(r["threads"])] + ["failed"] + [""] * (len(COLUMNS) - 4))
            continue
        acc = r.get("accuracy") or {}
        cells.append([
            r["name"], f"{r['runtime']} {r['version']}", str(r["threads"]), _fmt(r["size_mb"]), _fmt(r["init_ms"], ".1f"),
            _fmt(r["first_ms"]), _fmt(r["warmup_avg_ms"]), _fmt(r["min_ms"]), _fmt(r["p50_ms"]), _fmt(r["p90_ms"]),
            _fmt(r["p99_ms"]), _fmt(r["avg_ms"]), _fmt(r.get("gmac_s"), ".1f"), _fmt(r.get("images_per_s"), ".1f"), _fmt(r["rss_peak_mb"], ".0f"),
            _fmt(acc.get("dice"), ".4f"), _fmt(acc.get("iou"), ".4f"), _fmt(acc.get("image_recall"), ".3f"),
            _fmt(acc.get("false_reject_rate"), ".3f"), _fmt(r.get("vs_float", {}).get("dice"), "+.4f"),
        ])
    return cells


def text_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """Rows as an aligned plain-text table."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """Rows as a Markdown table."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows)])


def device_lines(device: dict) -> list[str]:
    runtimes = ", ".join(f"{k} {v}" for k, v in device["runtimes"].items()) or "none"
    board = f"{device['board']}, " if device.get("board") else ""
    return [f"{board}CPU {device['cpu']} ({device['machine']}, {device['cores']} cores); {device['os']}",
            f"Python {device['python']}, numpy {device['numpy']}, OpenCV {device['opencv']}; runtimes: {runtimes}; "
            f"delegate {device['delegate']}"]


def markdown_report(report: dict, plots: list[Path]) -> str:
    """The report as Markdown: device facts, the table, notes, plots."""
    what = (f"{report['images']} images of {report['data']}" + (f" [{report['split']}]" if report["split"] else "")
            if report["data"] else "no data (invoke timing only)")
    lines = ["# station bench", "", f"{report['time']}; {what}; {report['warmup']} warm-up and {report['runs']} "
             "timed invokes of one model input per run; each run in its own process.", "",
             *(f"- {line}" for line in device_lines(report["device"])), "",
             markdown_table(COLUMNS, table_rows(report)), "",
             "Latencies in ms are one invoke of one model input (batch 1). `img/s` is end to end: read, "
             "pre-process (tiles or resize), invoke, threshold and connected components. `RSS MB` is the "
             "process's peak. `dDice` is the Dice difference to the first float model measured. `GMAC/s`: the "
             "file's multiply-accumulates per invoke (counted from its graph) over the p50 latency; this CPU's "
             f"float32 peak: {report.get('peak_gmac_s') or 0:.1f} GMAC/s (matrix products on numpy's BLAS, all cores; "
             "int8 kernels can pass it). `python -m quantize.peak` writes an int8 file of matrix products alone: "
             "its row is a runtime's int8 peak."]
    if report["notes"]:
        lines += ["", "Notes:", "", *(f"- {n}" for n in report["notes"])]
    lines += ["", *(f"![{p.stem}]({p.name})" for p in plots)]
    return "\n".join(lines) + "\n"


def plot(report: dict, out_dir: Path, stem: str) -> list[Path]:
    """PNG plots: a latency histogram per model, and accuracy vs latency when there is accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in report["rows"] if "error" not in r]
    paths = []
    for name in dict.fromkeys(r["name"] for r in rows):
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in (r for r in rows if r["name"] == name):
            ax.hist(r["latencies_ms"], bins=30, alpha=0.6, label=f"{r['runtime']}, {r['threads']} thr")
        ax.set(xlabel="invoke latency (ms)", ylabel="invokes", title=name)
        ax.legend()
        paths.append(out_dir / f"{stem}_latency_{Path(name).stem}.png")
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    scored = [r for r in rows if r.get("accuracy")]
    if scored:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in scored:
            ax.scatter(r["p50_ms"], r["accuracy"]["dice"])
            ax.annotate(f"{r['name']} {r['runtime']} {r['threads']}t", (r["p50_ms"], r["accuracy"]["dice"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="invoke latency p50 (ms)", ylabel="Dice", title="accuracy vs latency")
        paths.append(out_dir / f"{stem}_accuracy_vs_latency.png")
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return paths


def _read_report(path: str) -> dict:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a station bench JSON report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list) or "device" not in report:
        raise BadInput(f"{path}: not a station bench JSON report (no rows and device)")
    return report


def compare(path_a: str, path_b: str) -> str:
    """Two reports side by side: rows matched by model file, runtime and threads, with B/A ratios."""
    a, b = _read_report(path_a), _read_report(path_b)
    lines = [f"A: {path_a}", *(f"   {x}" for x in device_lines(a["device"])),
             f"B: {path_b}", *(f"   {x}" for x in device_lines(b["device"])), ""]
    key = lambda r: (r["name"], r["runtime"], r["threads"])  # noqa: E731
    rows_b = {key(r): r for r in b["rows"] if "error" not in r}
    ratio = lambda x, y: "-" if x is None or y is None or not x else f"{y / x:.2f}x"  # noqa: E731
    dice = lambda r: (r.get("accuracy") or {}).get("dice")  # noqa: E731
    cells = []
    for ra in (r for r in a["rows"] if "error" not in r):
        rb = rows_b.pop(key(ra), None)
        if rb is None:
            continue
        cells.append([ra["name"], ra["runtime"], str(ra["threads"]), _fmt(ra["p50_ms"]), _fmt(rb["p50_ms"]),
                      ratio(ra["p50_ms"], rb["p50_ms"]), _fmt(ra.get("images_per_s"), ".1f"),
                      _fmt(rb.get("images_per_s"), ".1f"), ratio(ra.get("images_per_s"), rb.get("images_per_s")),
                      _fmt(ra["rss_peak_mb"], ".0f"), _fmt(rb["rss_peak_mb"], ".0f"), _fmt(dice(ra), ".4f"),
                      _fmt(dice(rb), ".4f")])
    if not cells:
        raise BadInput(f"{path_a} and {path_b} have no run in common (same model file name, runtime and threads)")
    header = ["model", "runtime", "thr", "p50 A", "p50 B", "B/A", "img/s A", "img/s B", "B/A", "RSS A", "RSS B",
              "Dice A", "Dice B"]
    return "\n".join(lines) + text_table(header, cells)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise BadInput(f"{option}: expected positive integers, got {text!r}")
    return values


def run(args) -> int:
    """The `station bench` verb."""
    if args.compare:
        print(compare(*args.compare))
        return 0
    if not args.model:
        raise BadInput("station bench needs --model FILE (or --compare A.json B.json)")
    report = bench(args.model, args.data, args.split, _int_list(args.threads, "--threads"),
                   [r.strip() for r in args.runtime.split(",") if r.strip()], args.warmup, args.runs, args.min_area)
    print("\n".join(device_lines(report["device"])))
    print(f"peak: {report['peak_gmac_s']:.1f} GMAC/s (float32 matrix products on numpy's BLAS, all cores)")
    print(text_table(COLUMNS, table_rows(report)))
    for note in report["notes"]:
        print(f"note: {note}")
    json_path, md_path = Path(args.json), Path(args.report)
    for path in (json_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    plots = plot(report, md_path.parent, md_path.stem)
    md_path.write_text(markdown_report(report, plots))
    print(f"results saved to {json_path}, {md_path} and {len(plots)} plot(s) in {md_path.parent}")
    return 0
