"""Tiny random-weight instruction-edit pipelines (FLUX.1 Kontext, FLUX.2 [klein], Qwen-Image-Edit and
Edit Plus) and a tiny SD 1.x IP-Adapter, written offline.

Component configs follow diffusers' fast tests (tests/pipelines/flux/test_pipeline_flux_kontext.py,
flux2/test_pipeline_flux2_klein.py, qwenimage/test_qwenimage_edit(_plus).py); their hub tokenizers and
processors are replaced by local ones (generation.local_tokenizers, generation.local_qwen).

    python tests/generation/tiny_edit_pipelines.py OUT_DIR   # writes OUT_DIR/{kontext,klein,qwen-edit,qwen-edit-plus}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from generation.local_qwen import QWEN_VOCAB, qwen_tokenizer, qwen_vl_processor, special_ids
from generation.local_tokenizers import clip_tokenizer, t5_tokenizer

EDIT_FAMILIES = ("kontext", "klein", "qwen-edit", "qwen-edit-plus")


def kontext_pipeline() -> Any:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    from tiny_pipelines import _clip_config, _t5, _vae

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(  # FLUX.1 Kontext [dev]'s scheduler config
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
        use_dynamic_shifting=True,
    )
    torch.manual_seed(0)
    vae = _vae(16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
    torch.manual_seed(0)
    return FluxKontextPipeline(
        scheduler=scheduler, vae=vae, text_encoder=CLIPTextModel(_clip_config()), tokenizer=clip_tokenizer(),
        text_encoder_2=_t5(), tokenizer_2=t5_tokenizer(), transformer=transformer,
    )


def klein_pipeline() -> Any:
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(  # the text states of layers 9, 18 and 27 stacked: 3 x 16 wide
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=False,
    )
    config = Qwen3Config(
        intermediate_size=16, hidden_size=16, num_hidden_layers=28, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=QWEN_VOCAB, max_position_embeddings=1024, head_dim=8,
    )
    torch.manual_seed(0)
    text_encoder = Qwen3ForCausalLM(config)
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(  # 8x downsampling like the real one; 4 latent channels, patchified 2x2 to 16
        sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(  # FLUX.2 [klein]'s
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
        use_dynamic_shifting=True, time_shift_type="exponential",
    )
    return Flux2KleinPipeline(scheduler=scheduler, text_encoder=text_encoder, tokenizer=qwen_tokenizer(),
                              transformer=transformer, vae=vae)


def _qwen_vl_text_encoder() -> Any:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = special_ids()
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": QWEN_VOCAB,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=QWEN_VOCAB, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], vision_token_id=ids["<|vision_pad|>"],
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config)


def qwen_edit_pipeline(plus: bool = False) -> Any:
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(0)
    z_dim = 16  # the real VAE's 16 latent channels, 8x downsampling (three levels)
    # The pipeline encodes the picture at 1 MP whatever the output size: 4 channels at full resolution
    # keep that cheap, 16 at the lower levels keep seeds far apart in pixels.
    vae = AutoencoderKLQwenImage(
        base_dim=4, z_dim=z_dim, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(  # Qwen-Image's
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=8192, max_shift=0.9, shift=1.0,
        shift_terminal=0.02, use_dynamic_shifting=True, time_shift_type="exponential",
    )
    pipeline_class = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    from generation.local_qwen import allow_processor_without_video

    allow_processor_without_video()
    return pipeline_class(scheduler=scheduler, vae=vae, text_encoder=_qwen_vl_text_encoder(), tokenizer=qwen_tokenizer(),
                          processor=qwen_vl_processor(), transformer=transformer)


BUILDERS = {
    "kontext": kontext_pipeline, "klein": klein_pipeline, "qwen-edit": qwen_edit_pipeline,
    "qwen-edit-plus": lambda: qwen_edit_pipeline(plus=True),
}


def write_tiny_edit_pipeline(family: str, folder: str | Path) -> Path:
    folder = Path(folder)
    pipe = BUILDERS[family]()
    processor = getattr(pipe, "processor", None)
    if processor is not None:  # transformers cannot save a Qwen2-VL processor without its video processor
        pipe.register_modules(processor=None)
    pipe.save_pretrained(folder)
    if processor is not None:
        from generation.local_qwen import save_processor

        save_processor(processor, folder / "processor")
        index = json.loads((folder / "model_index.json").read_text())
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def write_tiny_ip_adapter(folder: str | Path, unet_folder: str | Path, name: str = "ip-adapter_tiny.safetensors",
                          image_embed_dim: int = 32) -> Path:
    """An IP-Adapter for the UNet in `unet_folder` in diffusers' layout: `image_proj.*` (an ImageProjection to
    4 tokens) and `ip_adapter.{n}.to_k_ip/to_v_ip.weight` for the n-th cross-attention (1, 3, 5, …), plus a
    tiny CLIPVisionModelWithProjection in `image_encoder/` next to it. Returns the weight file."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.embeddings import ImageProjection
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    config = UNet2DConditionModel.load_config(str(unet_folder), subfolder="unet")
    channels, cross = list(config["block_out_channels"]), int(config["cross_attention_dim"])
    unet = UNet2DConditionModel.from_config(config)  # only its attention layout is read
    generator = torch.Generator().manual_seed(0)
    state: dict[str, Any] = {}
    key_id = 1
    for processor in unet.attn_processors:
        if processor.endswith("attn1.processor"):
            continue
        if processor.startswith("mid_block"):
            hidden = channels[-1]
        elif processor.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(processor[len("up_blocks.")])]
        else:
            hidden = channels[int(processor[len("down_blocks.")])]
        for part in ("to_k_ip", "to_v_ip"):  # strong enough that a reference shows in a tiny model
            state[f"ip_adapter.{key_id}.{part}.weight"] = torch.randn((hidden, cross), generator=generator) * 0.5
        key_id += 2
    torch.manual_seed(0)
    projection = ImageProjection(cross_attention_dim=cross, image_embed_dim=image_embed_dim, num_image_text_embeds=4)
    # The original IP-Adapter names: proj.* (diffusers renames it image_embeds.* on loading) and norm.*
    state.update({f"image_proj.{key.replace('image_embeds.', 'proj.')}": value.contiguous()
                  for key, value in projection.state_dict().items()})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / name))
    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=image_embed_dim, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, image_size=32, patch_size=4,
    ))
    encoder.save_pretrained(folder / "image_encoder")
    return folder / name


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    for family in EDIT_FAMILIES:
        print(write_tiny_edit_pipeline(family, out / family))


if __name__ == "__main__":
    main(sys.argv[1:])
