"""What one step of the inverter's search costs in the LM, with PyTorch's linear layers and
with the weight-first product the search uses (inversion/few_rows.py).

    .venv/bin/python bench/lm_step.py [--rows 1 2 4 8 16 32] [--prompt 60] [--steps 30]

A step extends every beam by one token: `--rows` rows (the default search writes 4 beams a
vector; the invert job 8 vectors together, 32) after a prompt of `--prompt` tokens held in
the LM's cache. Each row count is timed both ways, alternately, on the same model and
tokens: the median step of `--steps`, and the prompt's own forward. Prints a table and
writes bench/results/lm-step.json, docs/lm-step.png and a section of docs/inversion.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from report import machine, plot_against, write_section  # noqa: E402

from reverie.inversion.base_lm import SMOLLM2, load_base_lm  # noqa: E402
from reverie.inversion.few_rows import multiply_weight_first  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "lm-step.json"
PLOT = ROOT / "docs" / "lm-step.png"
DOC = ROOT / "docs" / "inversion.md"
COMMAND = shlex.join(["bench/lm_step.py", *sys.argv[1:]])


def timed(model: Any, rows: int, prompt: int, steps: int) -> tuple[float, float]:
    """(median ms of a step of `rows` rows after the prompt, median ms of the prompt's
    forward over 3)."""
    generator = torch.Generator().manual_seed(rows)
    ids = torch.randint(100, model.config.vocab_size - 100, (rows, prompt + 1), generator=generator)
    with torch.inference_mode():
        forwards = []
        for _ in range(3):
            started = time.perf_counter()
            cache = model(input_ids=ids[:, :prompt], use_cache=True).past_key_values
            forwards.append((time.perf_counter() - started) * 1000)
        mask = torch.ones(rows, prompt + 1, dtype=torch.long)
        positions = torch.full((rows, 1), prompt)
        times = []
        for _ in range(steps + 2):
            started = time.perf_counter()
            model(
                input_ids=ids[:, prompt:],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            times.append((time.perf_counter() - started) * 1000)
            cache.crop(prompt)  # the next step extends the same prompt
    return statistics.median(times[2:]), statistics.median(forwards)


def measure(row_counts: list[int], prompt: int, steps: int) -> list[dict[str, Any]]:
    model = load_base_lm(SMOLLM2, dtype=torch.float32).model
    timed(model, 1, prompt, 2)  # the first forwards warm up
    results = []
    for rows in row_counts:
        multiply_weight_first(model, enabled=False)
        step, forward = timed(model, rows, prompt, steps)
        multiply_weight_first(model)
        first_step, first_forward = timed(model, rows, prompt, steps)
        results.append(
            {
                "rows": rows,
                "step_ms": round(step, 1),
                "weight_first_step_ms": round(first_step, 1),
                "prompt_ms": round(forward, 1),
                "weight_first_prompt_ms": round(first_forward, 1),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured by `{result['command']}` ({result['machine']}): SmolLM2-135M in float32, a step "
        f"of each row count after a prompt of {result['prompt']} tokens in the cache (the median of "
        f"{result['steps']}), and the prompt's forward, with PyTorch's linear layers and weight first.",
        "",
        "| rows | step ms | weight first | faster | prompt ms | weight first |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['rows']} | {r['step_ms']} | {r['weight_first_step_ms']} | "
            f"{r['step_ms'] / r['weight_first_step_ms']:.2f}x | {r['prompt_ms']:.0f} | "
            f"{r['weight_first_prompt_ms']:.0f} |"
        )
    return [*lines, "", "![an LM step against its rows](lm-step.png)"]


def plot(rows: list[dict[str, Any]]) -> None:
    ways = {
        "x @ W.T (PyTorch's linear)": [r["step_ms"] for r in rows],
        "(W @ x.T).T (weight first)": [r["weight_first_step_ms"] for r in rows],
    }
    counts = [r["rows"] for r in rows]
    plot_against(PLOT, counts, ways, "rows (beams) a step", "ms a step (median)", "an LM step, float32")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--prompt", type=int, default=60, help="tokens in the cache before the step")
    parser.add_argument("--steps", type=int, default=30, help="steps timed for each row count")
    args = parser.parse_args()
    result = {
        "command": COMMAND,
        "machine": machine(),
        "prompt": args.prompt,
        "steps": args.steps,
        "rows": measure(args.rows, args.prompt, args.steps),
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    plot(result["rows"])
    lines = report_lines(result)
    print("\n".join(lines))
    write_section(DOC, "lm-step", lines, "Inversion")


if __name__ == "__main__":
    main()
