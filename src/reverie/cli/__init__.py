"""The `reverie` command. COMMANDS is every command and its arguments in one table; the
handlers live in commands.py, and each imports what it needs, so help starts fast."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from reverie import __version__
from reverie.cli.commands import (
    cmd_blend,
    cmd_config_show,
    cmd_consolidate,
    cmd_demo,
    cmd_eval_consolidation,
    cmd_fade,
    cmd_forget,
    cmd_import,
    cmd_inverter_eval,
    cmd_inverter_train,
    cmd_jobs,
    cmd_mcp,
    cmd_recall,
    cmd_remember,
    cmd_revive,
    cmd_runs,
    cmd_serve,
    cmd_show,
    cmd_stats,
    cmd_undo,
)
from reverie.config import Settings, load_settings
from reverie.config.settings import Ranking
from reverie.errors import ReverieError


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
            arg(
                "--start-from",
                help="a trained model whose weights start the run: builtin, or a run or model directory",
            ),
            arg(
                "--no-phrasebook",
                action="store_true",
                help="leave the training sentences out of the model (inversions may copy them)",
            ),
            arg(
                "--phrasebook-from",
                action="append",
                help="only this corpus file's sentences go into the phrasebook (repeatable; default: all)",
            ),
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
                "--batch",
                type=int,
                default=1,
                help="vectors inverted together (1: as a first read; inversion.batch_size: as the job)",
            ),
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
