"""`seal-dist train` / `python -m seal_dist.train`: the Hydra app that runs SEAL training.

    seal-dist train experiment=demo_cpu                  # a run in runs/<time>/
    seal-dist train -m experiment=demo_cpu seed=0,1      # a local sweep in multirun/<time>/<n>/
    seal-dist train resume=runs/<time>                   # continue a killed run from its last round
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seal_dist import config
from seal_dist.rundir import RunDir

config.register()
CONF_DIR = str(Path(__file__).parent / "conf")  # the top-level conf/, shipped inside the package


def load_resumed(cfg: DictConfig) -> DictConfig:
    """A resumed run uses the resolved config it was started with, in its own directory."""
    run = RunDir.existing(cfg.resume, "resume")
    try:
        saved = OmegaConf.merge(OmegaConf.structured(config.Config), OmegaConf.load(run.config_path))
    except OmegaConfBaseException as e:  # a run of another program, or of a version with other settings
        first_line = str(e).splitlines()[0]
        raise config.UserError(f"resume={cfg.resume}: its config.yaml does not fit the schema: {first_line}") from e
    saved.run_dir, saved.resume = cfg.resume, cfg.resume
    return saved


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with config.user_errors("seal-dist train"):
        if cfg.resume is not None:
            cfg = load_resumed(cfg)
        config.validate(cfg)
        config.check_model_folder(cfg.model)
        from seal_dist import loop  # heavy imports after the config and the model folder are checked

        loop.train(cfg)


if __name__ == "__main__":
    main()
