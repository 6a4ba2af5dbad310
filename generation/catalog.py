"""The renderer's model catalog: which models it serves and the cheap facts about each.

Family, native size, request defaults, the prompt's tokenizer, a family's and the LoRA library's
rules for a request: read from small files (config JSON, tokenizer files), never from a loaded
pipeline, so validation runs on any thread before torch renders anything.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .families import ModelInfo, read_model_info
from .loras import LoraLibrary
from .models import ModelSource, model_source
from .prompts import split_prompt
from .references import IpAdapters, check_references
from .request import GenerationRequest


class ModelCatalog:
    """The default model and the extra ones, with each model's family facts read once."""

    def __init__(self, model: str | ModelSource, extra_models: tuple[str | ModelSource, ...] = (),
                 lora_dir: str | Path | None = None, ip_adapter_dir: str | Path | None = None) -> None:
        default = model_source(model)
        self.default_model = default.name
        self._sources = {source.name: source for source in map(model_source, (default, *extra_models))}
        self.loras = LoraLibrary(lora_dir)  # LORA_DIR: <lora:name:weight> in prompts
        self.ip_adapters = IpAdapters(ip_adapter_dir)  # IP_ADAPTER_DIR: --sref/--oref on SD 1.x and SDXL
        self._tokenizers: dict[str, Any] = {}
        self._infos: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def source(self, name: str) -> ModelSource:
        return self._sources.get(name) or model_source(name)

    def add(self, source: ModelSource) -> None:
        """Serve `source` under its name too (a pipeline built in place; see Renderer.adopt)."""
        self._sources.setdefault(source.name, source)

    def model_info(self, model: str) -> ModelInfo:
        """Family and config facts of `model`, read once from its config files; RequestError if unusable."""
        with self._lock:
            if model not in self._infos:
                self._infos[model] = read_model_info(self.source(model))
            return self._infos[model]

    def tokenizer(self, model: str) -> Any:
        """The tokenizer whose window limits the prompt, loaded on its own (no pipeline needed).

        SD 1.x/2.x and SDXL: CLIP (77 tokens). SD3 and Flux: T5 (256 or 512 tokens; their CLIP encoders
        read only the start of a long prompt by design). None: an untested family (no length check).
        """
        info = self.model_info(model)
        with self._lock:
            if model not in self._tokenizers:
                self._tokenizers[model] = self._read_tokenizer(model, info)
            return self._tokenizers[model]

    def _read_tokenizer(self, model: str, info: ModelInfo) -> Any:
        subfolder = info.family.prompt_tokenizer
        if subfolder is None:
            return None  # untested family: the pipeline truncates as it does
        config = self.source(model).config_source
        if info.family.text_window is None:  # CLIP's 77-token window
            from transformers import CLIPTokenizer

            return CLIPTokenizer.from_pretrained(config, subfolder=subfolder)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(config, subfolder=subfolder)
        tokenizer.model_max_length = min(tokenizer.model_max_length, info.text_window or 10**6)
        return tokenizer

    def defaults(self, model: str) -> dict[str, Any]:
        """Request fields for `model` when the user sets none: the family's, overridden by its ModelSpec.

        Keys: num_inference_steps, guidance_scale, sampler, and negative_prompt when configured.
        """
        values = self.model_info(model).defaults()
        values.update(self.source(model).request_defaults())
        return values

    def check_request(self, request: GenerationRequest) -> None:
        """RequestError if the request's model cannot render it (sampler, negative prompt, size, prompt
        weights, a LoRA that is missing or made for another family, a reference the model cannot take)."""
        info = self.model_info(request.model)
        info.family.check_request(request, info)
        for tag in split_prompt(request.prompt).loras:
            self.loras.check_fits(tag.name, info)
        check_references(request, info, self.ip_adapters, self.source(request.model))

    def lora_names(self) -> list[str]:
        """The LoRAs in LORA_DIR (the choices for a lora option)."""
        return self.loras.names()

    def lora_hashes(self, prompt: str) -> dict[str, str]:
        """{name: A1111 short hash} of the LoRAs a prompt asks for, for the PNG's `Lora hashes`."""
        return {tag.name: self.loras.short_hash(tag.name) for tag in split_prompt(prompt).loras}
