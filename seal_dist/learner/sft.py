"""ReST-EM's M-step: supervised fine-tuning of the policy's LoRA adapter on (prompt -> self-edit), saving
each result as a new, versioned PEFT adapter. Plain torch/peft; the driver runs it inside a Ray actor."""

import math
from pathlib import Path

import peft
import torch

from seal_dist import guard
from seal_dist.config import LearnerConfig
from seal_dist.models import load_model, load_tokenizer
from seal_dist.training import Example, lora_config, train_epochs


class PolicyTrainer:
    def __init__(self, model_path: str, dtype: str, cfg: LearnerConfig, out_dir: str, torch_threads: int, seed: int):
        torch.set_num_threads(torch_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.cfg, self.out_dir = cfg, Path(out_dir)
        self.tokenizer = load_tokenizer(model_path)
        torch.manual_seed(seed)  # the adapter's initialisation: a run is reproducible from its seed
        model = load_model(model_path, dtype, device)
        free, _ = guard.targets(model, list(cfg.lora.target_modules), cfg.guard.anchors,  # no LoRA on an anchor
                                ("learner.guard.anchors", "learner.lora.target_modules"))
        self.model = peft.get_peft_model(model, lora_config(cfg.lora, free))

    @staticmethod
    def adapter_path(out_dir: str, version: int) -> str:
        return str(Path(out_dir) / f"v{version}")

    def restore(self, version: int) -> None:
        """Continues from a saved version (when resuming a run)."""
        path = Path(self.adapter_path(str(self.out_dir), version))
        state = peft.utils.load_peft_weights(str(path), device=str(self.model.device))
        peft.set_peft_model_state_dict(self.model, state)

    def update(self, examples: list[tuple[str, str]], version: int, seed: int) -> dict:
        """Trains the adapter on (prompt, self-edit) pairs, loss on the self-edit only, and saves it as
        `version`; returns its path and the mean loss of the last epoch."""
        data = [Example(prompt, completion) for prompt, completion in examples]
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.0)
        steps_per_epoch = math.ceil(len(data) / self.cfg.batch_size)
        total = self.cfg.epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / total)
        losses = train_epochs(self.model, self.tokenizer, data, optimizer, self.cfg.epochs, self.cfg.batch_size,
                              self.cfg.max_seq_len, seed, schedule)
        clipped = guard.clip(self.model, "default", self.cfg.guard.max_module_norm, self.cfg.guard.max_total_norm)
        path = self.adapter_path(str(self.out_dir), version)
        self.model.save_pretrained(path)
        last = losses[-steps_per_epoch:]
        return {"version": version, "path": path, "loss": sum(last) / len(last),
                "norm": guard.total_norm(guard.update_norms(self.model, "default")), "clipped": clipped}
