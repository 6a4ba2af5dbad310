"""Tiny random-weight SDXL, SD3 and Flux pipelines, written offline with diffusers' `save_pretrained`.

The component configs follow diffusers' own `get_dummy_components()` (tests/pipelines/...), scaled so
that the VAE downsamples 8x like the real ones and the latent channels match the real families (SDXL 4,
SD3 16, Flux 16 packed 2x2 into 64). The tokenizers are written locally (a byte-level CLIP BPE without
merges and a small T5 unigram vocabulary), so nothing comes from the hub.

    python tests/generation/tiny_pipelines.py OUT_DIR   # writes OUT_DIR/{sdxl,sd3,flux}
"""

from __future__ import annotations

import sys
from pathlib import Path

from generation.local_tokenizers import clip_tokenizer, t5_tokenizer

FAMILIES = ("sdxl", "sd3", "flux")


def _clip_config(hidden_size: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden_size, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=600, hidden_act="gelu", projection_dim=32,
        max_position_embeddings=77,
    )


def _t5():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=128, d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    return T5EncoderModel(config)


def _vae(latent_channels: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(  # four levels: 8x downsampling like the real VAEs
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=64, **extra,
    )


def sdxl_pipeline():
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(  # SDXL 1.0's scheduler config
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", interpolation_type="linear", use_karras_sigmas=False,
    )
    torch.manual_seed(0)
    vae = _vae(4, scaling_factor=0.13025)
    torch.manual_seed(0)
    # Two widths (24 + 40 = the UNet's 64), as in the real SDXL (768 + 1280): diffusers' single-file loader
    # tells the two encoders apart by width.
    text_encoder = CLIPTextModel(_clip_config(24))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(40))
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(), unet=unet, scheduler=scheduler,
    )


def sd3_pipeline():
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=32,
    )
    torch.manual_seed(0)
    vae = _vae(16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(_clip_config())
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config())
    text_encoder_3 = _t5()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=text_encoder, tokenizer=clip_tokenizer(), text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(), text_encoder_3=text_encoder_3, tokenizer_3=t5_tokenizer(),
    )


def flux_pipeline():
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,  # FLUX.1-dev; schnell has none
    )
    scheduler = FlowMatchEulerDiscreteScheduler(  # FLUX.1-dev's scheduler config
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
        use_dynamic_shifting=True,
    )
    torch.manual_seed(0)
    vae = _vae(16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config())
    text_encoder_2 = _t5()
    return FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer(), transformer=transformer,
    )


BUILDERS = {"sdxl": sdxl_pipeline, "sd3": sd3_pipeline, "flux": flux_pipeline}


def write_tiny_pipeline(family: str, folder: str | Path) -> Path:
    folder = Path(folder)
    BUILDERS[family]().save_pretrained(folder)
    return folder


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    for family in FAMILIES:
        print(write_tiny_pipeline(family, out / family))


if __name__ == "__main__":
    main(sys.argv[1:])
