"""The `seal-dist` console script: `seal-dist {train,eval} [hydra overrides...]`."""

import sys

COMMANDS = {"train": "seal_dist.train", "eval": "seal_dist.evaluate"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: seal-dist {{{','.join(COMMANDS)}}} [hydra overrides...]")
    module = __import__(COMMANDS[sys.argv[1]], fromlist=["main"])
    sys.argv = [f"seal-dist {sys.argv[1]}", *sys.argv[2:]]
    module.main()
