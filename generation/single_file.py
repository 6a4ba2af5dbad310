"""Save a diffusers Stable Diffusion (1.x/2.x or XL) folder as one checkpoint in the original key layout.

Mirrors diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py, but derives the block
layout from the model's config instead of hard-coding SD 1.x's (4 blocks, 2 layers each), so it also
works for small models such as tinyshapes. diffusers' `from_single_file` converts it back; pass the
diffusers folder as `config=` so it never needs the hub for component configs.

    python -m generation.single_file generation/tinyshapes/weights tinyshapes.safetensors

An output ending in .ckpt is written the old way instead: a torch pickle of {"state_dict": ...}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer."

UNET_RESNET_NAMES = [  # (diffusers, LDM)
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's size/crop conditioning
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
VAE_ATTENTION_NAMES = [  # (diffusers, LDM)
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
]


def _rename_unet_resnet(suffix: str) -> str:
    for diffusers_name, ldm_name in UNET_RESNET_NAMES:
        if suffix.startswith(diffusers_name + "."):
            return ldm_name + suffix[len(diffusers_name) :]
    return suffix


def unet_key_to_ldm(key: str, layers_per_block: int, has_up_attentions: bool) -> str:
    """Map one diffusers UNet2DConditionModel key to its LDM name (without the model prefix)."""
    for diffusers_name, ldm_name in UNET_TOP_LEVEL.items():
        if key.startswith(diffusers_name + "."):
            return ldm_name + key[len(diffusers_name) :]
    parts = key.split(".")
    stride = layers_per_block + 1  # each down level is L layers + one downsampler slot
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.* -> input_blocks.N.0.op.*
            return f"input_blocks.{1 + block * stride + layers_per_block}.0.op." + ".".join(parts[5:])
        layer = int(parts[3])
        rest = ".".join(parts[4:])
        index = 1 + block * stride + layer
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_rename_unet_resnet(rest)}"
        return f"input_blocks.{index}.1.{rest}"
    if parts[0] == "mid_block":
        kind, layer, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * layer}.{_rename_unet_resnet(rest)}"
        return f"middle_block.{2 * layer + 1}.{rest}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the last layer; slot 2 when that layer has an attention
            slot = 2 if has_up_attentions else 1
            return f"output_blocks.{block * stride + layers_per_block}.{slot}." + ".".join(parts[4:])
        layer = int(parts[3])
        rest = ".".join(parts[4:])
        index = block * stride + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_rename_unet_resnet(rest)}"
        return f"output_blocks.{index}.1.{rest}"
    raise ValueError(f"Unexpected UNet key {key!r}")


def vae_key_to_ldm(key: str, num_blocks: int) -> str:
    """Map one diffusers AutoencoderKL key to its LDM name (without the model prefix)."""
    parts = key.split(".")
    coder = parts[0]
    if coder in ("quant_conv", "post_quant_conv"):
        return key
    name = ".".join(parts[1:])
    if parts[1] == "conv_norm_out":
        return f"{coder}.norm_out.{parts[2]}"
    if parts[1] in ("conv_in", "conv_out"):
        return key
    if parts[1] in ("down_blocks", "up_blocks"):
        block = int(parts[2])
        # LDM numbers the decoder's up levels from the lowest resolution upwards.
        level = block if parts[1] == "down_blocks" else num_blocks - 1 - block
        kind = "down" if parts[1] == "down_blocks" else "up"
        if parts[3] in ("downsamplers", "upsamplers"):
            sampler = "downsample" if kind == "down" else "upsample"
            return f"{coder}.{kind}.{level}.{sampler}." + ".".join(parts[5:])
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.{kind}.{level}.block.{parts[4]}.{rest}"
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{coder}.mid.block_{int(parts[3]) + 1}.{rest}"
        rest = ".".join(parts[4:])
        for diffusers_name, ldm_name in VAE_ATTENTION_NAMES:
            if rest.startswith(diffusers_name + "."):
                rest = ldm_name + rest[len(diffusers_name) :]
                break
        return f"{coder}.mid.attn_1.{rest}"
    raise ValueError(f"Unexpected VAE key {name!r}")


def unet_and_vae_in_ldm_layout(folder: Path) -> dict[str, torch.Tensor]:
    """The UNet's and the VAE's weights under their original (LDM and SGM alike) keys."""
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    has_up_attentions = any("CrossAttn" in t for t in unet_config["up_block_types"])
    state: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(folder / "unet" / "diffusion_pytorch_model.safetensors").items():
        state[UNET_PREFIX + unet_key_to_ldm(key, unet_config["layers_per_block"], has_up_attentions)] = tensor
    num_vae_blocks = len(vae_config["down_block_types"])
    for key, tensor in load_file(folder / "vae" / "diffusion_pytorch_model.safetensors").items():
        ldm = vae_key_to_ldm(key, num_vae_blocks)
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # LDM's VAE attention uses 1x1 convolutions
        state[VAE_PREFIX + ldm] = tensor
    return state


def convert_folder_to_ldm_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """Read a diffusers SD folder (safetensors) and return one state dict in LDM key layout."""
    folder = Path(folder)
    state = unet_and_vae_in_ldm_layout(folder)
    for key, tensor in load_file(folder / "text_encoder" / "model.safetensors").items():
        # transformers >= 5.6 saves CLIPTextModel without the "text_model." level that LDM keys keep
        if not key.startswith("text_model."):
            key = "text_model." + key
        state[TEXT_ENCODER_PREFIX + key] = tensor
    return {key: tensor.contiguous() for key, tensor in state.items()}


# SDXL's original (SGM) checkpoints keep the two text encoders under conditioner.embedders: CLIP-L in
# transformers' layout, OpenCLIP bigG in open_clip's (fused q/k/v, resblocks, a transposed projection).
SDXL_TEXT_ENCODER_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT_ENCODER_2_PREFIX = "conditioner.embedders.1.model."
OPEN_CLIP_NAMES = [  # (diffusers, open_clip) inside an encoder layer
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("self_attn.out_proj", "attn.out_proj"),
]


def _with_text_model(key: str) -> str:
    # transformers >= 5.6 saves CLIP text models without the "text_model." level the LDM keys keep
    return key if key.startswith(("text_model.", "text_projection.")) else "text_model." + key


def open_clip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers CLIPTextModelWithProjection state dict in open_clip's key layout (SDXL's second encoder)."""
    state = {_with_text_model(key): tensor for key, tensor in state.items()}
    result: dict[str, torch.Tensor] = {
        "positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
        "token_embedding.weight": state.pop("text_model.embeddings.token_embedding.weight"),
        "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": state.pop("text_model.final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    state.pop("text_model.embeddings.position_ids", None)
    layers = sorted({int(key.split(".")[3]) for key in state if key.startswith("text_model.encoder.layers.")})
    for layer in layers:
        source = f"text_model.encoder.layers.{layer}."
        target = f"transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            result[target + f"attn.in_proj_{kind}"] = torch.cat(
                [state.pop(source + f"self_attn.{name}_proj.{kind}") for name in ("q", "k", "v")]
            )
            for diffusers_name, open_clip_name in OPEN_CLIP_NAMES:
                result[target + f"{open_clip_name}.{kind}"] = state.pop(source + f"{diffusers_name}.{kind}")
    if state:
        raise ValueError(f"Unexpected text encoder keys: {sorted(state)[:5]}")
    return result


def convert_sdxl_folder_to_sgm_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """Read a diffusers SDXL folder and return one state dict in the original SGM layout."""
    folder = Path(folder)
    state = unet_and_vae_in_ldm_layout(folder)
    for key, tensor in load_file(folder / "text_encoder" / "model.safetensors").items():
        state[SDXL_TEXT_ENCODER_PREFIX + _with_text_model(key)] = tensor
    second = open_clip_state_dict(load_file(folder / "text_encoder_2" / "model.safetensors"))
    state.update({SDXL_TEXT_ENCODER_2_PREFIX + key: tensor for key, tensor in second.items()})
    return {key: tensor.contiguous() for key, tensor in state.items()}


def convert_folder_to_single_file(folder: str | Path, output: str | Path) -> Path:
    """SD 1.x/2.x folders in the LDM layout, SDXL folders (two text encoders) in the SGM layout."""
    output = Path(output)
    index = json.loads((Path(folder) / "model_index.json").read_text())
    if index.get("_class_name", "").startswith("StableDiffusionXL"):
        state = convert_sdxl_folder_to_sgm_state_dict(folder)
    else:
        state = convert_folder_to_ldm_state_dict(folder)
    if output.suffix == ".ckpt":
        torch.save({"state_dict": state}, output)
    else:
        save_file(state, output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="diffusers model folder (model_index.json, unet/, vae/, ...)")
    parser.add_argument("output", help="output .safetensors (or .ckpt) path")
    args = parser.parse_args(argv)
    print(convert_folder_to_single_file(args.folder, args.output))


if __name__ == "__main__":
    main()
