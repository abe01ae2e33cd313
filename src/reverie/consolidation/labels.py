"""Labels: the text a merged point shows before (or without) an inversion.

A label is an original member's own text, the one whose vector is closest to the merged
vector; its cosine is that text's fidelity. A member that is itself a merged point offers
its own label's original (read from the archive, one call for a whole batch of merges),
so a label is always a text some agent wrote, never a label of a label.
"""

from __future__ import annotations

import numpy as np

from reverie.consolidation.planning import Label, MergePlan
from reverie.ledger.apply import Merge
from reverie.storage import PointId, Record, Store
from reverie.storage import payload as p
from reverie.storage.layouts import Layout


def labelled_merges(
    store: Store, archive: str, layout: Layout, plans: list[MergePlan], run_id: str
) -> list[Merge]:
    """Each plan as the applier writes it: its merged point, with its label, and its members."""
    labels = choose_labels(store, archive, layout, plans)
    return [
        Merge(plan.merged_record(run_id, layout, label), plan.members)
        for plan, label in zip(plans, labels, strict=True)
    ]


def choose_labels(store: Store, archive: str, layout: Layout, plans: list[MergePlan]) -> list[Label | None]:
    """One label per plan (None where no member has text)."""
    sources = [_label_source(m) for plan in plans for m in plan.members]
    wanted = [s for s in sources if s is not None]
    copies = {str(r.id): r for r in store.retrieve(archive, wanted)} if wanted else {}
    labels = []
    for plan in plans:
        candidates = []
        for member in plan.members:
            source = _label_source(member)
            original = member if source is None else copies.get(str(source))
            text = None if original is None else layout.shown_text(original.payload)
            if text is not None and original is not None and original.vector is not None:
                candidates.append((text, original.id, original.vector))
        labels.append(_closest(candidates, plan.vector))
    return labels


def _label_source(member: Record) -> PointId | None:
    """The original whose text a merged member shows; None for an original member."""
    stamp = p.meta(member.payload)
    if stamp.get("kind") != p.MERGED:
        return None
    return (stamp.get("label") or {}).get("id")


def _closest(candidates: list[tuple[str, PointId, np.ndarray]], vector: np.ndarray) -> Label | None:
    if not candidates:
        return None
    matrix = np.stack([np.asarray(c[2], dtype=np.float64) for c in candidates])
    centre = np.asarray(vector, dtype=np.float64)
    cosines = matrix @ centre / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(centre))
    best = int(np.argmax(cosines))
    text, source, _ = candidates[best]
    return Label(text, source, round(float(cosines[best]), 4))
