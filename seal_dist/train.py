"""`seal-dist train` / `python -m seal_dist.train`: the Hydra app that runs SEAL training.

    seal-dist train experiment=demo_cpu                  # a run in runs/<time>/
    seal-dist train experiment=demo_cpu -m seed=0,1      # a local sweep
    seal-dist train resume=runs/<time>                   # continue a killed run from its last round
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from seal_dist import config

config.register()
CONF_DIR = str(Path(__file__).parent / "conf")  # the top-level conf/, shipped inside the package


def load_resumed(cfg: DictConfig) -> DictConfig:
    """A resumed run uses the resolved config it was started with, in its own directory."""
    saved = OmegaConf.merge(OmegaConf.structured(config.Config), OmegaConf.load(f"{cfg.resume}/config.yaml"))
    saved.run_dir, saved.resume = cfg.resume, cfg.resume
    return saved


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from seal_dist import loop  # heavy imports after Hydra has validated the config

    if cfg.resume is not None:
        cfg = load_resumed(cfg)
    config.validate(cfg)
    loop.train(cfg)


if __name__ == "__main__":
    main()
