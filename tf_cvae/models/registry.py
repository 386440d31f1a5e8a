"""The registry from model name to encoder/decoder pair.

Adding a model is one encoder/decoder pair, one builder function and one
line here (critics have theirs in tf_cvae/critics.py). What the rest of the
package calls on the pair:
  encoder: call(batch) -> (mu, logvar) [batch, latent]; `early` (the hybrid
    critic's share); the class attribute `input_format` (formats.Sentences
    or formats.Images: export input, example batch, decoded output);
  decoder: target(batch), likelihood(batch, z), model_sample and relax (the
    model critic), generate(z, seed, greedy, max_length) (sampling).
"""

import dataclasses
from typing import Callable

from tf_cvae import errors
from tf_cvae.data import base as data_base
from tf_cvae.models import decoders
from tf_cvae.models import encoders
from tf_cvae.models import pixelcnn
from tf_cvae.models import resnet
from tf_cvae.models import vae as vae_lib


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Network sizes; `name` "auto" picks lstm for text and mlp for images."""
  name: str = "auto"
  embed_dim: int = 128
  hidden_dim: int = 256
  latent_dim: int = 32
  decoder_dropout: float = 0.5
  resnet_channels: int = 64             # pixelcnn: encoder's 3 stages
  pixelcnn_layers: int = 12             # pixelcnn: gated layers (+ output)
  pixelcnn_channels: int = 32           # pixelcnn: channels per gated layer
  lstm_impl: str = "auto"               # lstm: fused | keras | auto (fused
                                        # on CPU, keras/cuDNN with a GPU)
  bn_gamma: float = 0.0                 # BN-VAE: the fixed scale of the
                                        # normalised means; 0: none


def _lstm(config: ModelConfig, dataset: data_base.Dataset):
  vocab_size = len(dataset.vocab)
  return (encoders.LSTMEncoder(vocab_size, config.embed_dim, config.hidden_dim,
                               config.latent_dim, lstm_impl=config.lstm_impl,
                               name="encoder"),
          decoders.LSTMDecoder(vocab_size, config.embed_dim, config.hidden_dim,
                               dropout=config.decoder_dropout,
                               lstm_impl=config.lstm_impl, name="decoder"))


def _mlp(config: ModelConfig, dataset: data_base.Dataset):
  del dataset
  return (encoders.MLPEncoder(config.hidden_dim, config.latent_dim,
                              name="encoder"),
          decoders.MLPDecoder(config.hidden_dim, name="decoder"))


def _pixelcnn(config: ModelConfig, dataset: data_base.Dataset):
  del dataset
  return (resnet.ResNetEncoder(config.latent_dim, config.resnet_channels,
                               name="encoder"),
          pixelcnn.GatedPixelCNNDecoder(config.pixelcnn_layers,
                                        config.pixelcnn_channels,
                                        name="decoder"))


# name -> (data kind it models, builder of (encoder, decoder)).
MODELS: dict[str, tuple[str, Callable]] = {
    "lstm": ("text", _lstm),
    "mlp": ("image", _mlp),
    "pixelcnn": ("image", _pixelcnn),
}

_AUTO = {"text": "lstm", "image": "mlp"}


def resolve_model_name(config: ModelConfig, data_kind: str) -> str:
  """The registered model name for `config.name` ("auto" by data kind)."""
  name = _AUTO[data_kind] if config.name == "auto" else config.name
  if name not in MODELS:
    raise errors.InputError(f"unknown model {config.name!r}; known: auto, "
                     f"{', '.join(sorted(MODELS))}")
  if MODELS[name][0] != data_kind:
    raise errors.InputError(f"model {name!r} models {MODELS[name][0]} data, but the "
                     f"data set is {data_kind}")
  return name


def build_vae(config: ModelConfig, dataset: data_base.Dataset) -> vae_lib.VAE:
  """Builds the VAE named by `config` for `dataset` (variables created)."""
  name = resolve_model_name(config, dataset.kind)
  encoder, decoder = MODELS[name][1](config, dataset)
  if config.bn_gamma < 0:
    raise errors.InputError(f"bn_gamma must be at least 0, got "
                            f"{config.bn_gamma}")
  return vae_lib.VAE(encoder, decoder, config.latent_dim,
                     bn_gamma=config.bn_gamma, name=f"{name}_vae")
