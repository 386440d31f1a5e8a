"""The embedded default data: generated here from a seed, no download.

Both keep each example's true latent (`latents[split]`, [N, 2]), so an
evaluation can measure how much of it a posterior recovers.

Text (as He et al. 2019, section 6.1): sentences sampled from a randomly
initialised LSTM language model whose initial state and every input are
conditioned on a 2-d latent z ~ N(0, I). A plain LSTM-decoder VAE collapses on
it (the decoder models the words well without z) although z shapes every
sentence.

Images: 28x28 strokes whose angle and offset are set by a 2-d latent, stored as
Bernoulli probabilities (training images are re-binarized every epoch, valid
and test once with a fixed seed).
"""

import dataclasses

import numpy as np

from tf_cvae.data import base
from tf_cvae.data import vocabulary as vocab_lib


@dataclasses.dataclass(frozen=True)
class SyntheticTextConfig:
  """Sizes of the generated corpus and of the generating LSTM."""
  num_train: int = 10_000
  num_valid: int = 1_000
  num_test: int = 1_000
  num_words: int = 200
  embed_dim: int = 32
  hidden_dim: int = 64
  latent_dim: int = 2
  min_words: int = 4
  max_words: int = 20
  latent_scale: float = 2.0     # how strongly z drives the LSTM
  sharpness: float = 1.0        # inverse temperature of the word softmax
  seed: int = 0


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def sample_text(config: SyntheticTextConfig, num: int,
                rng: np.random.Generator, params: dict):
  """Samples `num` sentences; returns (word-id lists, latents [num, latent_dim])."""
  z = rng.standard_normal((num, config.latent_dim))
  c = np.tanh(z @ params["z_to_c"]) * config.latent_scale
  h = np.tanh(c)
  z_in = z @ params["z_to_in"]
  prev = np.full(num, config.num_words)          # a begin-of-sentence row
  words = np.zeros((num, config.max_words), dtype=np.int64)
  length = np.full(num, config.max_words)
  done = np.zeros(num, dtype=bool)
  for t in range(config.max_words):
    x = np.concatenate([params["embed"][prev], z_in], axis=1)
    gates = x @ params["w_x"] + h @ params["w_h"] + params["b"]
    i, f, g, o = np.split(gates, 4, axis=1)
    c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    logits = config.sharpness * (h @ params["w_out"] + params["b_out"])
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    draw = (rng.random((num, 1)) < probs.cumsum(axis=1)).argmax(axis=1)
    # The sentence ends with a hazard that rises with length and depends on h.
    stop_logit = (params["stop_bias"] + 0.4 * (t - config.min_words)
                  + h @ params["w_stop"])
    stop = (t >= config.min_words) & (rng.random(num) < _sigmoid(stop_logit))
    ended = stop & ~done
    length[ended] = t
    done |= ended
    words[:, t] = np.where(done, 0, draw)
    prev = draw
  return [words[k, :length[k]] for k in range(num)], z


def _generator_params(config: SyntheticTextConfig, rng: np.random.Generator):
  e, h, v = config.embed_dim, config.hidden_dim, config.num_words
  in_dim = e + h // 2
  return {
      "embed": rng.standard_normal((v + 1, e)),
      "z_to_c": rng.standard_normal((config.latent_dim, h)),
      "z_to_in": rng.standard_normal((config.latent_dim, h // 2)),
      "w_x": rng.standard_normal((in_dim, 4 * h)) / np.sqrt(in_dim),
      "w_h": rng.standard_normal((h, 4 * h)) / np.sqrt(h),
      "b": np.zeros(4 * h),
      "w_out": rng.standard_normal((h, v)) * 1.5,
      "b_out": rng.standard_normal(v) * 0.5,
      "w_stop": rng.standard_normal(h),
      "stop_bias": -3.0,
  }


def synthetic_text(config: SyntheticTextConfig = SyntheticTextConfig()
                   ) -> base.TextDataset:
  """Generates the embedded text corpus (deterministic given config.seed)."""
  rng = np.random.default_rng(config.seed)
  params = _generator_params(config, rng)
  vocab = vocab_lib.Vocabulary([f"w{i}" for i in range(config.num_words)])
  offset = len(vocab_lib.SPECIALS)
  splits, latents = {}, {}
  for split, num in (("train", config.num_train), ("valid", config.num_valid),
                     ("test", config.num_test)):
    words, latents[split] = sample_text(config, num, rng, params)
    splits[split] = [np.concatenate([[vocab_lib.BOS_ID], w + offset,
                                     [vocab_lib.EOS_ID]]).astype(np.int32)
                     for w in words]
  return base.TextDataset(name="synthetic_text", vocab=vocab, splits=splits,
                          latents=latents)


@dataclasses.dataclass(frozen=True)
class SyntheticImageConfig:
  """Sizes of the generated stroke images."""
  num_train: int = 10_000
  num_valid: int = 1_000
  num_test: int = 1_000
  width: float = 1.6            # stroke half-width in pixels
  softness: float = 0.6         # edge blur of the Bernoulli probabilities
  seed: int = 0


def sample_images(config: SyntheticImageConfig, num: int,
                  rng: np.random.Generator):
  """Returns (probabilities float32 [num, 28, 28, 1], latents [num, 2])."""
  z = rng.standard_normal((num, 2))
  angle = np.pi * _sigmoid(1.7 * z[:, 0])          # roughly uniform in (0, pi)
  offset = 6.0 * np.tanh(z[:, 1] / 1.5)            # pixels from the centre
  ys, xs = np.mgrid[0:28, 0:28].astype(np.float64) - 13.5
  normal_x, normal_y = -np.sin(angle), np.cos(angle)
  dist = np.abs(xs[None] * normal_x[:, None, None] +
                ys[None] * normal_y[:, None, None] - offset[:, None, None])
  along = np.abs(xs[None] * np.cos(angle)[:, None, None] +
                 ys[None] * np.sin(angle)[:, None, None])
  inside = (config.width - dist) / config.softness
  ends = (10.0 - along) / config.softness
  probs = _sigmoid(np.minimum(inside, ends)) * 0.97 + 0.01
  return probs[..., None].astype(np.float32), z


def synthetic_images(config: SyntheticImageConfig = SyntheticImageConfig()
                     ) -> base.ImageDataset:
  """Generates the embedded image set (deterministic given config.seed)."""
  rng = np.random.default_rng(config.seed)
  splits, latents = {}, {}
  for split, num in (("train", config.num_train), ("valid", config.num_valid),
                     ("test", config.num_test)):
    splits[split], latents[split] = sample_images(config, num, rng)
  return base.ImageDataset(
      name="synthetic_images", splits=splits, fixed_seed=config.seed,
      latents=latents,
      binarization={"train": "dynamic", "valid": "fixed", "test": "fixed"})
