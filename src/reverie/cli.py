"""The `reverie` command. COMMANDS, at the bottom, is every command and its arguments in
one table; each handler imports what it needs, so help starts fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from reverie import __version__
from reverie.config import Settings, load_settings, settings_as_toml
from reverie.config.settings import Ranking
from reverie.errors import InvalidInputError, ReverieError, StorageError

if TYPE_CHECKING:
    from reverie.daemon.client import DaemonClient
    from reverie.memory import Reverie


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings(args.config)
        if args.data_dir:
            settings.storage.data_dir = Path(args.data_dir)
        from reverie.logs import configure_logging

        logging = settings.logging
        if args.verbose:
            logging = logging.model_copy(update={"level": "info"})
        elif "level" not in logging.model_fields_set and args.handler is not cmd_serve:
            logging = logging.model_copy(update={"level": "warning"})  # commands print their results
        # MCP over stdio speaks on stdout: logs go to stderr there, as for every command but serve
        configure_logging(logging, to_stdout=args.handler is cmd_serve)
        return int(args.handler(args, settings) or 0)
    except ReverieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


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
    from reverie.importing import read_import

    memories = read_import(Path(args.file), Path(args.payloads) if args.payloads else None)
    with _open_storage(settings, "import") as rv:
        extra = rv.partition_payload(_partition(args.partition))
        for memory in memories:
            memory.payload.update(extra)
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


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from reverie.daemon.serve import serve

    if args.host:
        settings.daemon.host = args.host
    if args.port is not None:
        settings.daemon.port = args.port
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

    if args.host:
        settings.daemon.host = args.host
    if args.port is not None:
        settings.daemon.mcp_port = args.port
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
        progress=_tty(),
    )
    meta = train(options)
    print(
        f"trained {meta['word_epochs']} word epochs and {meta['prefix_steps']} prefix steps "
        f"({meta['train_hours']:.2f} h); model in {Path(args.out) / 'model'}, held-out sentences in "
        f"{Path(args.out) / 'holdout.txt'}; a rerun with the same --out continues"
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

    e = settings.embedder
    embedder = Embedder(e.model, e.device, e.batch_size)
    inverter = configured_inverter(settings.inversion, embedder, args.model)
    if inverter is None:
        raise InvalidInputError('inversion.model is "none": name an inverter with --model')
    sentences = read_sentences(Path(args.data), args.limit)
    result: dict[str, Any] = {
        "inverter": inverter.id,
        "sentences": evaluate_sentences(inverter, sentences, [None], progress=True),
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


# -- the commands, as one table -------------------------------------------------------------
@dataclass(frozen=True)
class Arg:
    """One argument of a command, as argparse's add_argument takes it."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    name: str  # "remember"; a group's commands: "inverter train"
    handler: Callable[[argparse.Namespace, Settings], Any]
    help: str
    args: tuple[Arg, ...] = ()


PARTITION = arg(
    "-p",
    "--partition",
    action="append",
    metavar="KEY=VALUE",
    help="partition key and value, e.g. -p user_id=u1 (repeatable)",
)
JSON = arg("--json", action="store_true")
GROUPS = {
    "config": "show the effective settings",
    "inverter": "train or evaluate the embedding inverter",
    "eval": "measure quality on labelled data",
}
COMMANDS: tuple[Command, ...] = (
    Command(
        "config show",
        cmd_config_show,
        "print the effective settings as TOML",
        (arg("--commented", action="store_true", help="with descriptions, every line commented out"),),
    ),
    Command(
        "remember",
        cmd_remember,
        "embed texts and store them as memories",
        (
            arg("text", nargs="*", help="memory text(s)"),
            arg("--file", help="a text file, one memory a line"),
            PARTITION,
        ),
    ),
    Command(
        "import",
        cmd_import,
        "store raw vectors with payloads (.jsonl, or .npy + --payloads)",
        (
            arg("file", help="JSONL with vectors, or a .npy matrix"),
            arg("--payloads", help="JSONL of payloads, one line per .npy row"),
            PARTITION,
        ),
    ),
    Command(
        "recall",
        cmd_recall,
        "search memories by text",
        (
            arg("query"),
            arg("-k", type=int, default=5, help="how many hits (default 5)"),
            arg(
                "--rank",
                choices=get_args(Ranking),
                help="similarity, or memory: relevance, recency and importance (default: recall.rank)",
            ),
            JSON,
            PARTITION,
        ),
    ),
    Command("show", cmd_show, "show one memory with its lineage", (arg("id"),)),
    Command(
        "forget",
        cmd_forget,
        "delete memories, also merged away ones (their merges are undone)",
        (arg("ids", nargs="+", metavar="ID"),),
    ),
    Command(
        "consolidate",
        cmd_consolidate,
        "merge near-duplicate memories now",
        (
            arg("--full", action="store_true", help="every point, not only new ones"),
            arg("--dry-run", action="store_true", help="print the plan, change nothing"),
            arg("--algorithm", choices=["agglomerative", "dbscan"]),
            arg("--linkage", choices=["complete", "average"]),
            arg("--threshold", type=float, help="cosine similarity, e.g. 0.8"),
            JSON,
        ),
    ),
    Command(
        "runs",
        cmd_runs,
        "list consolidation runs, or `runs show RUN` for one",
        (
            arg("show", nargs="?", choices=["show"], help=argparse.SUPPRESS),
            arg("run_id", nargs="?", help=argparse.SUPPRESS),
            arg("--limit", type=int, default=20),
        ),
    ),
    Command(
        "undo",
        cmd_undo,
        "undo a run (RUN id: a consolidation, blend or forget) or one merge",
        (arg("target"),),
    ),
    Command(
        "fade",
        cmd_fade,
        "memories faded below forget.below for forget.after_days go dormant",
        (arg("--dry-run", action="store_true", help="say how many, change nothing"), JSON),
    ),
    Command("revive", cmd_revive, "bring a dormant memory back into the live collection", (arg("id"),)),
    Command(
        "stats",
        cmd_stats,
        "counts: live, merged, archived, dormant, pending; strength; accesses",
        (JSON, arg("--plot", type=Path, metavar="PNG", help="write a histogram of memory strength")),
    ),
    Command(
        "jobs",
        cmd_jobs,
        "list the daemon's scheduled jobs, or `jobs run JOB` to run one now",
        (
            arg("run", nargs="?", choices=["run"], help=argparse.SUPPRESS),
            arg("job_id", nargs="?", help=argparse.SUPPRESS),
        ),
    ),
    Command(
        "serve",
        cmd_serve,
        "run the HTTP API in the foreground (until SIGTERM)",
        (
            arg("--host", help="bind address (default 127.0.0.1)"),
            arg("--port", type=int, help="port (default 8765; 0: any free port)"),
            arg("--config", default=argparse.SUPPRESS, help="TOML config file (as before the command)"),
        ),
    ),
    Command(
        "blend",
        cmd_blend,
        "blend memories or texts into one vector and read it back as text",
        (
            arg("parents", nargs="+", metavar="PARENT", help="a memory id or a quoted text (two or more)"),
            arg("--weights", help="one per parent, e.g. 0.5,0.5 (default: equal)"),
            arg("--save", action="store_true", help="store the blend as a memory (undo removes it)"),
            JSON,
            PARTITION,
        ),
    ),
    Command(
        "mcp",
        cmd_mcp,
        "serve the memory over the Model Context Protocol (stdio or HTTP)",
        (
            arg("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio"),
            arg("--host", help="HTTP bind address (default: daemon.host)"),
            arg("--port", type=int, help="HTTP port (default: daemon.mcp_port, 8766)"),
        ),
    ),
    Command(
        "demo",
        cmd_demo,
        "write sample paraphrased memories, consolidate, show the result",
        (arg("--keep", action="store_true", help="keep the demo's earlier data"),),
    ),
    Command(
        "inverter train",
        cmd_inverter_train,
        "train the inverter's projections for an embedder (resumable; a rerun continues)",
        (
            arg(
                "--corpus",
                required=True,
                action="append",
                help="sentences (.txt[.gz], one a line) or paraphrase groups (.jsonl[.gz]); repeatable",
            ),
            arg("--out", required=True, help="run directory (checkpoints; a rerun resumes from them)"),
            arg("--embedder", help="sentence-transformers model (default: embedder.model)"),
            arg("--base-lm", help="the LM that writes (default: inversion.base_lm)"),
            arg("--holdout", type=int, default=1000, help="groups kept back per file (holdout.txt)"),
            arg("--max-minutes", type=float, help="wall-clock budget; stops and saves when spent"),
            arg("--word-epochs", type=int, default=4, help="epochs of the word projection (minutes each)"),
            arg("--prefix-len", type=int, default=0, help="prefix vectors and LoRA adapters (0: none)"),
            arg("--prefix-steps", type=int, default=1_000_000, help="steps of the prefix phase"),
            arg("--seed", type=int, default=0),
            arg("--limit", type=int, help="use only the first N groups of each file"),
        ),
    ),
    Command(
        "inverter eval",
        cmd_inverter_eval,
        "token F1, cosine and seconds per vector on held-out text",
        (
            arg(
                "--model", help="builtin, zero-shot, a trained directory, gtr-base (default: inversion.model)"
            ),
            arg("--data", required=True, help="sentences, one a line (e.g. RUN/holdout.txt)"),
            arg("--limit", type=int, help="only the first N sentences"),
            arg(
                "--paraphrases", help="paraphrase groups (JSONL[.gz]): consolidate, read merged memories back"
            ),
            arg("--groups", type=int, default=200, help="paraphrase groups used"),
            arg("--blends", type=int, default=0, help="blend this many pairs of unrelated sentences"),
            JSON,
        ),
    ),
    Command(
        "eval consolidation",
        cmd_eval_consolidation,
        "precision/recall/F1 against paraphrase groups",
        (
            arg("--data", required=True, help="JSONL(.gz): {group, texts: {name: text}}"),
            arg(
                "--algorithm",
                action="append",
                help="agglomerative-complete, agglomerative-average or dbscan "
                "(repeatable; default: the configured one)",
            ),
            arg("--threshold", action="append", type=float, help="repeatable: a sweep"),
            arg("--limit", type=int, help="use only the first N groups"),
            arg("--query", default=None, help="the text variant used as queries (default: last)"),
            arg("--write", default=None, help="write the result table/plot here (docs/)"),
            JSON,
        ),
    ),
)


def _parser() -> argparse.ArgumentParser:
    """The parser COMMANDS describes, in its order."""
    parser = argparse.ArgumentParser(
        prog="reverie",
        description="A self-evolving memory daemon: consolidates near-duplicate memories.",
    )
    parser.add_argument("--version", action="version", version=f"reverie {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $REVERIE_CONFIG, ./reverie.toml)")
    parser.add_argument("--data-dir", help="override storage.data_dir")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every step (default: warnings only)"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    groups: dict[str, Any] = {}
    for command in COMMANDS:
        group, _, name = command.name.rpartition(" ")
        if group and group not in groups:
            holder = sub.add_parser(group, help=GROUPS[group], description=GROUPS[group])
            groups[group] = holder.add_subparsers(title="commands", metavar="COMMAND", required=True)
        added = (groups[group] if group else sub).add_parser(
            name, help=command.help, description=command.help
        )
        added.set_defaults(handler=command.handler)
        for argument in command.args:
            added.add_argument(*argument.flags, **argument.options)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
