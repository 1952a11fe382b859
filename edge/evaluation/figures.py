"""The pictures `station eval --json OUT` writes beside OUT: engineers look before they trust.

    write_figures(report, pairs, probs, "runs/eval/test")   # test_curve.png, test_worst.png

STEM_curve.png: catch rate against false reject rate over every image-score threshold, the card's
operating point marked. STEM_worst.png: the defective images with the lowest scores and the clean
ones with the highest, each beside its probability map, the truth outlined, marked MISSED or FALSE
REJECT at the card's image threshold.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)


def write_figures(report: dict, pairs: list, probs: list, stem: str | Path, worst: int = 4) -> list[Path]:
    """Both pictures of an evaluation report (module docstring); returns their paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [_curve(report, stem.parent / f"{stem.name}_curve.png")]
    worst_path = stem.parent / f"{stem.name}_worst.png"
    if _worst(report, pairs, probs, worst, worst_path):
        paths.append(worst_path)
    return paths


def _curve(report: dict, path: Path) -> Path:
    curve = report["curve"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.step([0.0, *curve["false_reject_rate"]], [0.0, *curve["recall"]], where="post")
    if report.get("score_recall") is not None:
        ax.plot([report["score_false_reject_rate"] or 0.0], [report["score_recall"]], "o",
                label=f"image threshold {report['image_threshold']:.4f}")
        ax.legend(loc="lower right")
    ax.set(xlabel="false reject rate (clean images rejected)", ylabel="catch rate (defective images rejected)",
           title=f"{report['split']}: AUROC {_fmt(report['image_auroc'])}, AP {_fmt(report['image_ap'])}",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _worst(report: dict, pairs: list, probs: list, worst: int, path: Path) -> bool:
    scores, t = report["image_scores"], report.get("image_threshold")
    defective = sorted((p for p in zip(pairs, probs) if p[0][2].any()), key=lambda p: scores[p[0][0]])[:worst]
    clean = sorted((p for p in zip(pairs, probs) if not p[0][2].any()), key=lambda p: -scores[p[0][0]])[:worst]

    def title(pid: str, is_defective: bool) -> str:
        kind = "defective" if is_defective else "clean"
        if t is not None:
            kind = ("caught" if scores[pid] >= t else "MISSED") if is_defective else ("FALSE REJECT" if scores[pid] >= t else "passed")
        return f"{kind} {pid}: score {scores[pid]:.4f}" + ("" if t is None else f" (threshold {t:.4f})")

    rows = [(title(pid, True), image, mask, prob) for (pid, image, mask), prob in defective]
    rows += [(title(pid, False), image, mask, prob) for (pid, image, mask), prob in clean]
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 2.6 * len(rows)), squeeze=False)
    for (name, image, mask, prob), (a, b) in zip(rows, axes):
        a.imshow(image[..., 0] if image.shape[2] == 1 else image, cmap="gray")
        if mask.any():
            a.contour(mask, levels=[0.5], colors="r", linewidths=0.8)
        b.imshow(prob, vmin=0, vmax=1, cmap="magma")
        a.set_title(name, fontsize=8)
        for x in (a, b):
            x.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
