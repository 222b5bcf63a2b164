"""ReST-EM's M-step: supervised fine-tuning of the policy's LoRA adapter on (prompt -> self-edit), saving
each result as a new, versioned PEFT adapter (and, with `learner.merge`, the model with that adapter merged
in, on which the next round starts a fresh adapter). Plain torch/peft; the driver runs it inside a Ray actor."""

import math
from pathlib import Path

import peft
import torch

from seal_dist import guard
from seal_dist.config import LearnerConfig
from seal_dist.example import Example
from seal_dist.models import load_model, load_tokenizer
from seal_dist.policy import Policy
from seal_dist.training import lora_config, train_epochs


class PolicyTrainer:
    def __init__(self, model_path: str, dtype: str, cfg: LearnerConfig, out_dir: str, torch_threads: int, seed: int):
        """`model_path`: the model the policy's adapter is on (the base model; with `learner.merge`, the
        latest merged version's folder)."""
        torch.set_num_threads(torch_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.cfg, self.out_dir, self.model_path, self.seed = cfg, Path(out_dir), model_path, seed
        self.tokenizer = load_tokenizer(model_path)
        self.model = self._with_fresh_adapter(load_model(model_path, dtype, device))

    def _with_fresh_adapter(self, model) -> peft.PeftModel:
        # the adapter's initialisation: a run is reproducible from its seed (a resumed one too)
        torch.manual_seed(self.seed)
        free, _ = guard.targets(model, list(self.cfg.lora.target_modules), self.cfg.guard.anchors,  # none on an anchor
                                ("learner.guard.anchors", "learner.lora.target_modules"))
        return peft.get_peft_model(model, lora_config(self.cfg.lora, free))

    def restore(self, adapter_path: str) -> None:
        """Continues from a saved adapter (when resuming a run)."""
        state = peft.utils.load_peft_weights(adapter_path, device=str(self.model.device))
        peft.set_peft_model_state_dict(self.model, state)

    def update(self, examples: list[tuple[str, str]], version: int, seed: int) -> dict:
        """Trains the adapter on (prompt, self-edit) pairs, loss on the self-edit only, and saves it as
        `version`; returns the new policy, the mean loss of the last epoch and the adapter's norm (with
        `learner.merge`, of this round's adapter alone: the merged ones are part of the weights)."""
        data = [Example(prompt, completion) for prompt, completion in examples]
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.0)
        steps_per_epoch = math.ceil(len(data) / self.cfg.batch_size)
        total = self.cfg.epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / total)
        losses = train_epochs(self.model, self.tokenizer, data, optimizer, self.cfg.epochs, self.cfg.batch_size,
                              self.cfg.max_seq_len, seed, schedule)
        clipped = guard.clip(self.model, "default", self.cfg.guard.max_module_norm, self.cfg.guard.max_total_norm)
        path = str(self.out_dir / f"v{version}")
        self.model.save_pretrained(path)
        last, norm = losses[-steps_per_epoch:], guard.total_norm(guard.update_norms(self.model, "default"))
        policy = self._merge(version) if self.cfg.merge else Policy(version, self.model_path, path)
        return {"policy": policy, "loss": sum(last) / len(last), "norm": norm, "clipped": clipped}

    def _merge(self, version: int) -> Policy:
        """The adapter merged into the weights, saved as `v<version>-model` (weights and tokenizer), and a fresh
        adapter on the merged model for the next round."""
        folder = str(self.out_dir / f"v{version}-model")
        merged = self.model.merge_and_unload()
        merged.name_or_path = folder  # what the next adapter's config names as its base model
        merged.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.model, self.model_path = self._with_fresh_adapter(merged), folder
        return Policy(version, folder, None)
