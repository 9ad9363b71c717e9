"""Models: config/presets, the NNX transformer, KV cache, sharded creation, HF I/O."""
from r1jax.models.config import (ModelConfig, PRESETS, PUBLISHED_PARAM_COUNTS, RopeScaling,
                                 get_model_config)
from r1jax.models.factory import (abstract_model, create_model, logical_axes_tree, merge_params,
                                  param_shardings, split_params, count_params)
from r1jax.models.kv_cache import init_cache, make_cache, cache_shardings
from r1jax.models.transformer import Transformer
from r1jax.models.hf import config_from_hf, config_to_hf, load_pretrained, save_pretrained
