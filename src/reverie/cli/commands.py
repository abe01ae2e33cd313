"""The handlers of the `reverie` command, one per row of COMMANDS (cli/__init__.py): each
opens what it needs (the running daemon's API, or the storage) and prints its result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reverie.config import Settings, settings_as_toml
from reverie.errors import InvalidInputError, ReverieError, StorageError

if TYPE_CHECKING:
    from reverie.daemon.client import DaemonClient
    from reverie.memory import Reverie


# -- commands -----------------------------------------------------------------------------
def _open(settings: Settings) -> Reverie | DaemonClient:
    """The running daemon's API when `reverie serve` holds this data directory (it owns
    the storage then), else the storage itself."""
    from reverie.daemon.registration import running_daemon

    daemon = running_daemon(settings.storage.data_dir)
    if daemon is not None:
        from reverie.daemon.client import DaemonClient

        return DaemonClient(daemon, settings.daemon.api_key)
    return _open_storage(settings, "")


def _open_storage(settings: Settings, command: str) -> Reverie:
    """Storage itself, for commands the API does not carry: they name the daemon in the way."""
    from reverie.daemon.registration import running_daemon
    from reverie.memory import Reverie

    daemon = running_daemon(settings.storage.data_dir)
    if daemon is not None and command:
        raise StorageError(
            f"`reverie {command}` needs the storage, and reverie serve (pid {daemon.pid}) holds "
            f"{settings.storage.data_dir}: stop it first, or write through its API ({daemon.url}/docs)"
        )
    return Reverie.open(settings)


def _daemon(settings: Settings) -> DaemonClient:
    from reverie.daemon.client import DaemonClient
    from reverie.daemon.registration import running_daemon

    daemon = running_daemon(settings.storage.data_dir)
    if daemon is None:
        raise StorageError(
            f"no reverie serve is running for {settings.storage.data_dir}: jobs live in the daemon "
            "(start it with `reverie serve`)"
        )
    return DaemonClient(daemon, settings.daemon.api_key)


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> None:
    print(settings_as_toml(settings, commented=args.commented), end="")
    if settings.storage.layout == "auto":
        print(f"# storage.layout auto: {_detected_layout(settings)}")


def _detected_layout(settings: Settings) -> str:
    """What `auto` finds in the collection now (through the daemon when it holds the store)."""
    from reverie.daemon.registration import running_daemon
    from reverie.storage import open_store
    from reverie.storage.detection import CollectionLayout

    s = settings.storage
    try:
        if running_daemon(s.data_dir) is not None:
            with _daemon(settings) as daemon:
                layout = daemon.layout
        else:
            store = open_store(s)
            try:
                if not store.collection_exists(s.collection):
                    return (
                        f"collection {s.collection!r} does not exist yet (reverie's own layout until it does)"
                    )
                layout = CollectionLayout.of(store, settings).get()
            finally:
                store.close()
    except ReverieError as exc:
        return f"not detected ({exc})"
    return f"collection {s.collection!r} reads as {json.dumps(layout.describe())}"


def cmd_remember(args: argparse.Namespace, settings: Settings) -> None:
    texts = list(args.text)
    if args.file:
        texts.extend(_read_lines(Path(args.file)))
    if not texts:
        raise InvalidInputError("nothing to remember: give TEXT or --file FILE")
    with _open(settings) as rv:
        ids = rv.remember(texts, partition=_partition(args.partition), progress=_tty())
    print(f"remembered {len(ids)} memor{'y' if len(ids) == 1 else 'ies'}")
    if len(ids) == 1:
        print(ids[0])


def cmd_import(args: argparse.Namespace, settings: Settings) -> None:
    """Into the store, or through `reverie serve` when one holds it (packed, payloads as given)."""
    from tqdm import tqdm

    from reverie.daemon.registration import running_daemon
    from reverie.importing import read_import
    from reverie.storage.intake import with_tenant

    memories = read_import(Path(args.file), Path(args.payloads) if args.payloads else None)
    partition = _partition(args.partition)
    daemon = running_daemon(settings.storage.data_dir)
    if daemon is not None:
        with tqdm(total=len(memories), desc="importing", unit="mem", disable=not _tty()) as bar:
            ids = _daemon(settings).import_memories(memories, partition, progress=bar.update)
        print(f"imported {len(ids)} memories through reverie serve (pid {daemon.pid})")
        return
    with _open_storage(settings, "import") as rv:
        tenant = rv.partition_payload(partition)
        for memory in memories:
            memory.payload = with_tenant(memory.payload, tenant)
        ids = rv.write(memories, progress=_tty())
    print(f"imported {len(ids)} memories into {settings.storage.collection!r}")


def cmd_recall(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.display import hit_lines

    with _open(settings) as rv:
        hits = rv.recall(args.query, k=args.k, partition=_partition(args.partition), rank=args.rank)
        if args.json:
            print(json.dumps([_hit_json(h) for h in hits], default=str))
            return
        if not hits:
            print("no memories found")
        for line in hit_lines(hits, rv.layout):
            print(line)


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.display import memory_lines, use_line

    with _open(settings) as rv:
        record, archived = rv.get(args.id)
        text = rv.text(record)
        for line in memory_lines(record, archived, text, rv.layout):
            print(line)
        print(use_line(record, settings.memory))


def cmd_forget(args: argparse.Namespace, settings: Settings) -> None:
    with _open(settings) as rv:
        released = rv.forget(args.ids)
    line = f"deleted {len(released.ids)} memories"
    if released.undone:
        line += f"; undid {len(released.undone)} merge(s) to reach them (run {released.run_id})"
    print(line)


def cmd_consolidate(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.display import report_lines

    with _open(settings) as rv:
        report = rv.consolidate(
            full=args.full,
            dry_run=args.dry_run,
            algorithm=args.algorithm,
            linkage=args.linkage,
            threshold=args.threshold,
        )
    if args.json:
        print(json.dumps(report.summary() | {"merges": report.merges}, default=str))
        return
    for line in report_lines(report):
        print(line)


def cmd_runs(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.display import run_detail_lines, runs_table
    from reverie.ledger.runs import RunLog

    log = RunLog(settings.storage.data_dir / "runs.sqlite")
    try:
        if args.run_id:
            lines = run_detail_lines(log.get_run(args.run_id), log.merges(args.run_id))
        else:
            lines = runs_table(log.runs(limit=args.limit))
    finally:
        log.close()
    for line in lines:
        print(line)


def cmd_undo(args: argparse.Namespace, settings: Settings) -> None:
    with _open(settings) as rv:
        report = rv.undo(args.target)
    restored = sum(len(u["restored"]) for u in report.undone)  # type: ignore[arg-type]
    if report.undone and all("revived" in u for u in report.undone):
        print(f"undo {report.run_id}: brought back {restored} dormant memories of {args.target}")
        return
    print(
        f"undo {report.run_id}: undid {len(report.undone)} merge(s) of {args.target}, "
        f"restored {restored} memories"
    )


def cmd_fade(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.display import forget_json

    with _open(settings) as rv:
        report = rv.forget_faded(dry_run=args.dry_run)
    if args.json:
        print(json.dumps(forget_json(report), default=str))
        return
    if args.dry_run:
        print(f"dry run: {report.considered} faded memories would go dormant; nothing changed")
        return
    run = report.run_id
    print(f"run {run}: {len(report.dormant)} faded memories went dormant (undo: reverie undo {run})")
    for entry in report.dormant[:20]:
        used = f"{entry['accesses']} accesses, last {entry['last_access']}"
        print(f"  {entry['id']}  retention {entry['retention']:.3f}, {used}")
    if report.kept_rewritten:
        print(f"  kept {len(report.kept_rewritten)} rewritten meanwhile")


def cmd_revive(args: argparse.Namespace, settings: Settings) -> None:
    with _open(settings) as rv:
        record = rv.revive(args.id)
    print(f"revived {record.id}: live again")


def cmd_stats(args: argparse.Namespace, settings: Settings) -> None:
    with _open(settings) as rv:
        stats = rv.stats()
    if args.plot:
        from reverie.display import plot_strength

        plot_strength(stats["strength"], args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        print(json.dumps(stats))
        return
    last = stats.pop("last_run")
    for key, value in stats.items():
        print(f"{key:>13}  {value}")
    print(
        f"{'last run':>13}  " + (f"{last['run_id']} ({last['kind']}, {last['status']})" if last else "none")
    )


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> None:
    with _daemon(settings) as daemon:
        if args.job_id:
            started = daemon.run_job(args.job_id)
            print(f"job {started['job']}: {started['status']}")
            return
        for job in daemon.jobs():
            print(f"{job['id']:<12} next {job['next_run_time'] or 'paused'}  {job['trigger']}")


def _listen(args: argparse.Namespace, settings: Settings, port_setting: str) -> None:
    """--host and --port over the daemon settings they name."""
    if args.host:
        settings.daemon.host = args.host
    if args.port is not None:
        setattr(settings.daemon, port_setting, args.port)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.daemon.serve import serve

    _listen(args, settings, "port")
    serve(settings)


def cmd_blend(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.inversion.blending import parse_weights

    with _open(settings) as rv:
        result = rv.blend(args.parents, parse_weights(args.weights), args.save, _partition(args.partition))
    shown = result.as_json()
    if args.json:
        print(json.dumps(shown))
        return
    fidelity = (
        "" if shown["fidelity"] is None else f"  [{shown['text_source']}, fidelity {shown['fidelity']:.2f}]"
    )
    print(f"{shown['text'] or '(no text: no parent has any and no inverter is configured)'}{fidelity}")
    for parent in shown["parents"]:
        print(f"  {parent['cosine']:.2f}  weight {parent['weight']:g}  {parent['text'] or parent['parent']}")
    if shown["saved_id"]:
        run = shown["run_id"]
        print(f"saved as {shown['saved_id']} (run {run}; `reverie undo {run}` removes it)")


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.daemon.mcp import create_server, run

    _listen(args, settings, "mcp_port")
    with _open(settings) as memory:
        run(create_server(memory, settings), settings, args.transport)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.demo import run_demo

    run_demo(settings, fresh=not args.keep)


def cmd_inverter_train(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.inversion.training import TrainOptions, train

    options = TrainOptions(
        corpus=[Path(c) for c in args.corpus],
        out=Path(args.out),
        embedder=args.embedder or settings.embedder.model,
        base_lm=args.base_lm or settings.inversion.base_lm,
        model_cache=settings.inversion.model_cache,
        holdout=args.holdout,
        seed=args.seed,
        limit=args.limit,
        max_minutes=args.max_minutes,
        word_epochs=args.word_epochs,
        prefix_len=args.prefix_len,
        prefix_steps=args.prefix_steps,
        phrasebook=not args.no_phrasebook,
        phrasebook_from=[Path(c) for c in args.phrasebook_from] if args.phrasebook_from else None,
        start_from=args.start_from,
        progress=_tty(),
    )
    meta = train(options)
    print(
        f"trained {meta['word_epochs']} word epochs and {meta['prefix_steps']} prefix steps "
        f"({meta['train_hours']:.2f} h); model in {Path(args.out) / 'model'}, held-out sentences in "
        f"{Path(args.out) / 'holdout.txt'}; a rerun with the same --out continues"
    )
    if begun := meta.get("started_from"):
        print(
            f"it started from {begun['model']}'s weights "
            f"({begun['word_epochs']} word epochs on {begun['sentences']} sentences)"
        )
    if meta.get("phrasebook"):
        print(
            f"the model carries {meta['phrasebook']:,} of its {meta['sentences']:,} training sentences "
            "as a phrasebook: they steer inversions, which may copy them (train on private text with "
            "--no-phrasebook, or name the files it may hold with --phrasebook-from)"
        )


def cmd_inverter_eval(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.evaluation.inversion import (
        evaluate_blends,
        evaluate_merges,
        evaluate_sentences,
        read_sentences,
        result_lines,
    )
    from reverie.inversion.embedders import Embedder
    from reverie.inversion.inverter import configured_inverter

    if args.batch < 1:  # before any model loads
        raise InvalidInputError(f"--batch must be at least 1, not {args.batch}")
    e = settings.embedder
    embedder = Embedder(e.model, e.device, e.batch_size)
    inverter = configured_inverter(settings.inversion, embedder, args.model)
    if inverter is None:
        raise InvalidInputError('inversion.model is "none": name an inverter with --model')
    sentences = read_sentences(Path(args.data), args.limit)
    result: dict[str, Any] = {
        "inverter": inverter.id,
        "sentences": evaluate_sentences(inverter, sentences, [None], progress=True, batch=args.batch),
    }
    if args.paraphrases:
        result["merges"] = evaluate_merges(inverter, Path(args.paraphrases), args.groups, progress=True)
    if args.blends:
        result["blends"] = evaluate_blends(inverter, sentences, args.blends, progress=True)
    if args.json:
        print(json.dumps(result))
        return
    for line in result_lines(result):
        print(line)


def cmd_eval_consolidation(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.evaluation.consolidation import evaluate_file, result_lines

    results = evaluate_file(
        Path(args.data),
        settings,
        algorithms=args.algorithm or None,
        thresholds=args.threshold or None,
        limit=args.limit,
        write=args.write,
        query_translation=args.query,
    )
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
        return
    for line in result_lines(results):
        print(line)


# -- helpers ------------------------------------------------------------------------------
def _tty() -> bool:
    return sys.stderr.isatty()


def _read_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise InvalidInputError(f"{path} holds no text (one memory a line)")
    return texts


def _partition(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--partition {item!r}: expected KEY=VALUE, e.g. user_id=u1")
        out[key] = value
    return out


def _hit_json(hit: Any) -> dict[str, Any]:
    from reverie.display import score_json

    return {"id": hit.id, "payload": hit.payload} | score_json(hit)
