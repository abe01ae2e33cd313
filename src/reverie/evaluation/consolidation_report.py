"""Write an evaluation sweep as a markdown table and a precision/recall plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(results: list[dict[str, Any]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "consolidation-eval.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results, out_dir / "consolidation-pr.png")


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (pr, comp) = plt.subplots(1, 2, figsize=(11, 4.5))
    for index, name in enumerate(dict.fromkeys(r["algorithm"] for r in results)):
        color = f"C{index}"
        rows = sorted((r for r in results if r["algorithm"] == name), key=lambda r: r["threshold"])
        pr.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "o-", color=color, label=name)
        for r in rows:
            pr.annotate(f"{r['threshold']:.2f}", (r["recall"], r["precision"]), fontsize=7)
        thresholds = [r["threshold"] for r in rows]
        comp.plot(thresholds, [r["f1"] for r in rows], "o-", color=color, label=f"{name} F1")
        comp.plot(
            thresholds, [r["compression"] for r in rows], "--", color=color, label=f"{name} after/before"
        )
    pr.set(xlabel="pairwise recall", ylabel="pairwise precision", title="merges vs. verse groups")
    comp.set(xlabel="cosine threshold", title="F1 and compression by threshold")
    pr.grid(alpha=0.3)
    comp.grid(alpha=0.3)
    pr.legend(fontsize=8)
    comp.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
