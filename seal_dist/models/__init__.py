"""Loading causal LMs and their tokenizers by path, and resolving the configured model to a path."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from seal_dist.config import ModelConfig, check_model_folder
from seal_dist.models import tiny
from seal_dist.tasks.interface import Task


def resolve_path(model: ModelConfig, task: Task) -> str:
    """The checkpoint folder to use: model.path, or the tiny model built (once) into the cache from the task's
    pretraining corpus."""
    if model.path is not None:
        check_model_folder(model)
        return model.path
    return tiny.ensure(model.tiny, task, model.cache_dir)


def load_tokenizer(path: str):
    """The folder's tokenizer, loaded as vLLM loads it (by the model's architecture)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, dtype: str, device: str) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
