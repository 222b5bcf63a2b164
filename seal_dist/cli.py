"""The `seal-dist` console script, `seal-dist <command> [arguments...]`, and its command list."""

import argparse
import importlib
import sys

COMMANDS = {  # name: (Hydra app module, what it does)
    "train": ("seal_dist.train", "train a policy with SEAL (ReST-EM rounds) in runs/<time>/"),
    "eval": ("seal_dist.evaluate", "compare updates on held-out passages: table, eval.json, charts"),
    "grid": ("seal_dist.grid", "train + eval for each pretraining x world seed; one table"),
    "adapt": ("seal_dist.adapt", "take in new documents: a self-edit and a bounded LoRA update each"),
    "continual": ("seal_dist.continual", "sequences of self-edits: the forgetting matrix, unbounded vs bounded"),
    "continual-table": ("seal_dist.continual_table", "a continual sweep's points in one table, mean and sd over cells"),
}

OWN_OUTPUT = {"adapt": ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none"]}  # writes only into adapt.output


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="seal-dist", description="SEAL (Self-Adapting Language Models) on Ray.",
        epilog="`seal-dist <command> --help` lists the command's config groups and settings (Hydra's help); "
               "a failing command shows its traceback with HYDRA_FULL_ERROR=1.")
    commands = parser.add_subparsers(dest="command", required=True, title="commands")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    command = parser.parse_args(sys.argv[1:2]).command  # the rest are the Hydra app's arguments
    sys.argv = [f"seal-dist {command}", *sys.argv[2:], *OWN_OUTPUT.get(command, [])]
    importlib.import_module(COMMANDS[command][0]).main()
