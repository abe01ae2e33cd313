"""Views of memories and runs: plain text for the terminal (hits, memories, run reports and
run records), and the JSON a memory is shown as by the HTTP API and the MCP tools."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reverie.config import MemorySettings
from reverie.inversion.lazy import MemoryText, cached_text
from reverie.ledger.usage import use_of
from reverie.lifecycle.ranking import PARTS
from reverie.lifecycle.retention import retention
from reverie.storage import Hit, Record
from reverie.storage import payload as p
from reverie.storage.layouts import Layout

if TYPE_CHECKING:  # the engine pulls in scikit-learn; `reverie runs` must start fast
    from reverie.consolidation.engine import RunReport
    from reverie.ledger.runs import MergeRecord, RunRecord
    from reverie.lifecycle.forgetting import ForgetReport


def text_of(record: Record, layout: Layout) -> str:
    """The text a memory shows without running a model (search results, lists)."""
    return cached_text(record, layout).shown()


def memory_json(record: Record, text: MemoryText) -> dict[str, Any]:
    """A memory as the API and MCP show it. `text` is null while pending; `text_source` says
    whether it is the agent's, an inversion (with `fidelity` and `inverter`) or a label."""
    stamp = p.meta(record.payload)
    return {
        "id": record.id,
        "text": text.text,
        "text_source": text.source,
        "fidelity": text.fidelity,
        "inverter": text.inverter,
        "text_note": text.note,
        "weight": p.weight(record.payload),
        "kind": stamp.get("kind", p.ORIGINAL),
        "state": stamp.get("state", p.FRESH),
        "payload": p.agent_payload(record.payload),
        "meta": stamp,
    }


def use_line(record: Record, settings: MemorySettings) -> str:
    """How much a memory has been used, and how strong that leaves it now."""
    use = use_of(record.payload)
    strength = retention(use, p.utcnow(), settings)
    last = use.last.isoformat(timespec="seconds")
    return f"use       {use.count} accesses, last {last}, retention {strength:.3f}"


def forget_json(report: ForgetReport) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "dry_run": report.dry_run,
        "due": report.considered,
        "dormant": report.dormant,
        "kept_rewritten": report.kept_rewritten,
    }


def score_json(hit: Hit) -> dict[str, Any]:
    """A hit's score, and what it is made of when ranked by memory."""
    return {"score": hit.score, "score_parts": hit.parts} if hit.parts else {"score": hit.score}


def lineage(record: Record) -> str:
    stamp = p.meta(record.payload)
    if stamp.get("kind") != p.MERGED:
        return "original"
    return f"merged from {len(stamp.get('merged_from', []))} ({p.weight(record.payload):g} originals)"


def hit_lines(hits: list[Hit], layout: Layout) -> list[str]:
    lines = []
    for rank, hit in enumerate(hits, start=1):
        weight = p.weight(hit.payload)
        lines.append(f"{rank}. {hit.score:.3f}  {text_of(hit, layout)}")
        lines.append(f"   id {hit.id}  weight {weight:g}  {lineage(hit)}")
        if hit.parts:
            parts = "  ".join(f"{name} {hit.parts[name]:.3f}" for name in PARTS)
            lines.append(f"   {parts}  (normalised and weighted into the score)")
    return lines


def memory_lines(record: Record, archived: bool, text: MemoryText, layout: Layout) -> list[str]:
    stamp = p.meta(record.payload)
    lines = [
        f"id        {record.id}",
        f"text      {text.shown()}",
        *([f"          ({text.note})"] if text.note else []),
        f"state     {'archived' if archived else stamp.get('state', p.FRESH)}",
        f"weight    {p.weight(record.payload):g}",
        f"lineage   {lineage(record)}",
    ]
    if stamp.get("kind") == p.MERGED:
        lines.append(f"members   {', '.join(str(i) for i in stamp.get('merged_from', []))}")
        lines.append(f"run       {stamp.get('run_id')}")
    if archived:
        into = stamp.get("archived", {})
        lines.append(f"merged into {into.get('merged_into')} by run {into.get('run_id')}")
    agent = {k: v for k, v in p.agent_payload(record.payload).items() if k != layout.text}
    if agent:
        lines.append(f"payload   {agent}")
    return lines


def report_lines(report: RunReport) -> list[str]:
    verb = "would merge" if report.dry_run else "merged"
    lines = [
        f"run {report.run_id} ({report.mode}{', dry run: nothing changed' if report.dry_run else ''})",
        f"  memories before {report.points_before}, after {report.points_after}: "
        f"{verb} {report.members_merged} into {report.merge_count}",
        f"  adopted {report.adopted} new, quarantined {report.quarantined}, "
        f"considered {report.considered} ({report.route} route), candidate pairs {report.pairs}, "
        f"skipped merges {len(report.skipped)}",
        "  stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()),
    ]
    for merge in report.merges:
        lines.extend(merge_lines(merge))
    if report.merge_count > len(report.merges):
        more = report.merge_count - len(report.merges)
        lines.append(f"  ... and {more} more merges: reverie runs show {report.run_id}")
    return lines


def merge_lines(merge: dict[str, Any]) -> list[str]:
    lines = [
        f"  merge {merge['merge_id']}  ({merge['size']} points, weight {merge['weight']:g}, "
        f"min pair similarity {merge['min_pair_similarity']:.3f})"
    ]
    for member in merge["members"]:
        text = member.get("text") or f"id {member['id']}"
        lines.append(f"    {member['similarity']:.3f}  {text}")
    return lines


def runs_table(runs: list[RunRecord]) -> list[str]:
    if not runs:
        return ["no runs yet"]
    header = f"{'run':<26} {'kind':<11} {'started (UTC)':<20} {'secs':>6} {'in':>7} {'out':>7}"
    lines = [f"{header} {'merges':>6}  status"]
    for run in runs:
        s = run.summary
        seconds = sum(s.get("timings", {}).values())
        lines.append(
            f"{run.run_id:<26} {run.kind:<11} {run.started_at[:19]:<20} {seconds:>6.2f} "
            f"{s.get('points_before', '-'):>7} {s.get('points_after', '-'):>7} "
            f"{s.get('merges', s.get('undone', '-')):>6}  {run.status}"
        )
    return lines


def run_detail_lines(run: RunRecord, merges: list[MergeRecord]) -> list[str]:
    s = run.summary
    lines = [
        f"run {run.run_id}  {run.kind}  {run.status}",
        f"  started {run.started_at}  finished {run.finished_at}",
        *([f"  {s['note']}"] if "note" in s else []),
    ]
    if run.kind == "consolidate":
        lines.append(
            f"  memories before {s.get('points_before')}, after {s.get('points_after')}; "
            f"params {s.get('params')}"
        )
    for merge in merges:
        if run.kind == "consolidate" and not merge.detail:  # compacted when its run was pruned
            lines.append(f"  [{merge.status}] {merge.merge_id}")
        elif run.kind == "consolidate":
            lines.append(f"  [{merge.status}]")
            lines.extend(merge_lines(merge.detail))
        elif run.kind == "forget":
            d = merge.detail
            lines.append(
                f"  [{merge.status}] {merge.merge_id}: retention {d.get('retention')}, {d.get('accesses')} "
                f"accesses, last {d.get('last_access')}; {d.get('reason')}"
            )
        else:
            lines.append(f"  [{merge.status}] {merge.merge_id}: restored {merge.detail.get('restored')}")
    if not merges:
        lines.append("  no merges")
    return lines


def plot_strength(strength: dict[str, Any] | None, path: Path) -> None:
    """A bar per tenth of retention: how much of the memory is fresh, how much fading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = (strength or {}).get("histogram") or [0] * 10
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([(i + 0.5) / len(counts) for i in range(len(counts))], counts, width=0.9 / len(counts))
    memories = (strength or {}).get("memories", 0)
    ax.set(xlabel="retention exp(-dt/S)", ylabel="memories", title=f"memory strength ({memories} live)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
