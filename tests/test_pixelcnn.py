"""The ResNet encoder and gated PixelCNN decoder: causality, values, training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae.models import pixelcnn
from tf_cvae.models import registry

SMALL = registry.ModelConfig(name="pixelcnn", latent_dim=8, resnet_channels=16,
                             pixelcnn_layers=4, pixelcnn_channels=16)
PAPER = registry.ModelConfig(name="pixelcnn")   # the paper's sizes, latent 32


@pytest.fixture(scope="module")
def dataset():
  return data_lib.load(data_lib.DataConfig(name="synthetic_images"))


def _vae(config, dataset, seed=0):
  """A VAE with its variables created by one pass on a batch of 1."""
  keras.utils.set_random_seed(seed)
  vae = registry.build_vae(config, dataset)
  batch = {"image": tf.zeros([1, 28, 28, 1])}
  vae.log_likelihood(batch, vae.encode(batch)[0])
  return vae


def _binary(rng, batch):
  return (rng.random((batch, 28, 28, 1)) < 0.5).astype(np.float32)


def _logits(decoder, images, z):
  return decoder.logits({"image": tf.constant(images)}, z).numpy()


@pytest.mark.parametrize("config, batch", [(SMALL, 2), (PAPER, 1)])
def test_flipping_pixel_k_changes_no_logit_at_or_before_k(config, batch,
                                                           dataset):
  decoder = _vae(config, dataset).decoder
  rng = np.random.default_rng(0)
  images = _binary(rng, batch)
  z = tf.constant(rng.normal(size=(batch, config.latent_dim)), tf.float32)
  positions = [0, 1, 27, 28, 29, 406, 782, 783]
  # One pass over [images, images with pixel k flipped for each k]. The
  # logits at or before k must not move beyond round-off (exactly zero with
  # direct convolutions; Winograd-like algorithms may leave ~1e-7).
  flipped = np.tile(images.reshape(batch, 784), (len(positions) + 1, 1))
  for n, k in enumerate(positions, start=1):
    rows = slice(n * batch, (n + 1) * batch)
    flipped[rows, k] = 1 - flipped[rows, k]
  logits = _logits(decoder, flipped.reshape(-1, 28, 28, 1),
                   tf.tile(z, [len(positions) + 1, 1])).reshape(-1, batch, 784)
  for n, k in enumerate(positions, start=1):
    diff = np.abs(logits[n] - logits[0])
    assert diff[:, :k + 1].max() < 1e-5, k
    if (k + 1) % 28:  # and it does reach the next pixel of its row
      assert diff[:, k + 1].min() > 1e-4, k


def test_receptive_field_has_no_blind_spot(dataset):
  decoder = _vae(SMALL, dataset).decoder
  image = tf.Variable(_binary(np.random.default_rng(1), 1))
  i, j = 10, 14
  with tf.GradientTape() as tape:
    logit = decoder.logits({"image": image}, tf.zeros([1, 8]))[0, i, j, 0]
  reach = np.abs(tape.gradient(logit, image).numpy()[0, :, :, 0]) > 0
  assert not reach.reshape(-1)[i * 28 + j:].any()        # causal
  # Above-right of the pixel is where masked-conv PixelCNNs are blind.
  for row, col in [(i, j - 1), (i, j - 3), (i - 1, j), (i - 1, j + 1),
                   (i - 1, j + 4), (i - 2, j + 6), (i - 5, j)]:
    assert reach[row, col], (row, col)


def test_log_prob_is_sum_of_bernoulli_log_probs_of_the_logits(dataset):
  decoder = _vae(SMALL, dataset).decoder
  batch = next(iter(dataset.batches("test", 4)))
  z = tf.random.stateless_normal([4, 8], seed=[3, 4])
  likelihood = decoder.likelihood(batch, z)
  assert likelihood.event_shape == (28, 28, 1)
  logits = decoder.logits(batch, z).numpy().astype(np.float64)
  x = batch["image"].numpy()
  log_sigmoid = lambda a: -np.logaddexp(0.0, -a)
  expected = np.sum(x * log_sigmoid(logits) + (1 - x) * log_sigmoid(-logits),
                    axis=(1, 2, 3))
  np.testing.assert_allclose(likelihood.log_prob(decoder.target(batch)),
                             expected, rtol=1e-5)


def test_z_conditions_every_pixel(dataset):
  decoder = _vae(SMALL, dataset).decoder
  images = np.repeat(_binary(np.random.default_rng(2), 1), 2, axis=0)
  z = tf.random.stateless_normal([2, 8], seed=[5, 6])
  logits = _logits(decoder, images, z)
  assert np.abs(logits[0] - logits[1]).min() > 0.0        # pixel 0 included
  assert np.abs(logits[0] - logits[1]).mean() > 1e-2


@pytest.fixture(scope="module")
def small_decoder(dataset):
  decoder = _vae(SMALL, dataset).decoder
  decoder.to_logits.bias.assign([-1.5])   # pixels mostly off, as in strokes
  return decoder


@pytest.mark.slow
def test_sample_is_binary_seeded_and_autoregressively_distributed(
    small_decoder):
  z = tf.random.stateless_normal([32, 8], seed=[7, 8])
  x = small_decoder.sample(z, tf.constant([1, 2])).numpy()
  assert x.shape == (32, 28, 28, 1)
  assert set(np.unique(x)) <= {0.0, 1.0}
  np.testing.assert_array_equal(
      x, small_decoder.sample(z, tf.constant([1, 2])).numpy())
  assert (x != small_decoder.sample(z, tf.constant([1, 3])).numpy()).any()
  # x_k ~ Bernoulli(p_k(x_<k, z)): sum_k (x_k - p_k) is a zero-mean sum of
  # 25,088 independent-increment terms with variance sum p_k (1 - p_k).
  p = tf.sigmoid(small_decoder.logits({"image": tf.constant(x)}, z)).numpy()
  z_score = np.sum(x - p) / np.sqrt(np.sum(p * (1 - p)))
  assert abs(z_score) < 4.0, z_score


@pytest.mark.slow
def test_first_pixel_marginal_matches_its_probability(small_decoder):
  num = 128
  z = tf.tile(tf.random.stateless_normal([1, 8], seed=[9, 9]), [num, 1])
  first = small_decoder.sample(z, tf.constant([4, 5])).numpy()[:, 0, 0, 0]
  p = float(tf.sigmoid(small_decoder.logits(
      {"image": tf.zeros([1, 28, 28, 1])}, z[:1])[0, 0, 0, 0]))
  assert abs(first.mean() - p) < 4.0 * np.sqrt(p * (1 - p) / num) + 1e-3


def test_greedy_takes_each_pixel_above_one_half(small_decoder):
  z = tf.random.stateless_normal([4, 8], seed=[1, 1])
  x = small_decoder.greedy(z).numpy()
  p = tf.sigmoid(small_decoder.logits({"image": tf.constant(x)}, z)).numpy()
  clear = np.abs(p - 0.5) > 1e-5    # XLA and eager round differently
  np.testing.assert_array_equal(x[clear], (p > 0.5)[clear].astype(np.float32))


def test_resnet_encoder_shapes_and_early_layers(dataset):
  encoder = _vae(SMALL, dataset).encoder
  batch = next(iter(dataset.batches("test", 5)))
  mu, logvar = encoder(batch)
  assert mu.shape == logvar.shape == (5, 8)
  features = encoder.early(batch)
  assert features.shape == (5, 16)
  feature_map = encoder.early(batch, feature_map=True)
  assert feature_map.shape == (5, 28, 28, 16)
  np.testing.assert_allclose(features, tf.reduce_mean(feature_map, [1, 2]),
                             rtol=1e-5)
  early = {id(v) for v in encoder.early.trainable_variables}
  first_stage = {id(v) for layer in (encoder.early.stem, encoder.early.block)
                 for v in layer.trainable_variables}
  rest = {id(v) for layer in encoder.stages + [encoder.to_params]
          for v in layer.trainable_variables}
  assert early == first_stage and len(early) == 6       # stem + 2 convs
  assert early < {id(v) for v in encoder.trainable_variables}
  assert not early & rest


def test_parameter_counts_at_paper_size(dataset):
  vae = _vae(PAPER, dataset)
  count = lambda layer: sum(int(np.prod(v.shape))
                            for v in layer.trainable_variables)
  print(f"\nResNet encoder: {count(vae.encoder):,} parameters; gated "
        f"PixelCNN decoder: {count(vae.decoder):,}")
  # Encoder (64 channels, latent 32): stem 9*64+64 = 640; block at 28x28
  # 2*(9*64*64+64) = 73,856; two strided blocks, each also with a 1x1
  # shortcut 64*64+64: 2*78,016; Dense 7*7*64 -> 64: 3136*64+64 = 200,768.
  assert count(vae.encoder) == 640 + 73_856 + 2 * 78_016 + 200_768
  # Decoder (32 channels): to_cond 32*3136+3136 = 103,488. A gated layer of
  # kernel k: vertical r*k*C_in*64+64, horizontal r*C_in*64+64 (r = k//2 + 1,
  # k//2 for the first), link 64*64+64, cond 2*4*64, out 32*32+32 = 5,728
  # beyond the two causal convs. First (k 9, C_in 1): 2,368+320+5,728 =
  # 8,416; then k 9: 108,256 (x2), k 7: 71,392, k 5: 42,720, k 3: 22,240
  # (x3 each); output 1x1 conv 33.
  assert count(vae.decoder) == (103_488 + 8_416 + 2 * 108_256 + 3 * 71_392
                                + 3 * 42_720 + 3 * 22_240 + 33)
  assert pixelcnn.spread_kernel_sizes(12) == pixelcnn.PAPER_KERNEL_SIZES
  assert pixelcnn.spread_kernel_sizes(4) == (9, 7, 5, 3)


@pytest.mark.slow
def test_hundred_adam_steps_lower_the_negative_elbo(dataset):
  vae = _vae(SMALL, dataset)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(vae.trainable_variables)
  config = objective.ObjectiveConfig()

  @tf.function
  def step(batch, seed):
    with tf.GradientTape() as tape:
      terms = objective.forward(vae, None, batch, seed, training=True)
      loss = objective.loss(terms, config).total
    gradients = tape.gradient(loss, vae.trainable_variables)
    optimizer.apply_gradients(zip(gradients, vae.trainable_variables))
    return loss

  batches = dataset.batches("train", 50, shuffle=True, drop_remainder=True)
  losses = [float(step(batch, tf.constant([0, n])))
            for n, batch in enumerate(batches.take(100))]
  print(f"\nnegative ELBO: first {losses[0]:.1f}, last 10 mean "
        f"{np.mean(losses[-10:]):.1f} nats")
  assert losses[0] > 400.0                    # about 784 log 2 = 543 at init
  assert np.mean(losses[-10:]) < 0.5 * losses[0]


def test_checkpoint_restores_every_pixelcnn_weight(tmp_path):
  """Layers held in Python lists (the ResNet's stages, the gated layers)
  must be in the checkpoint: a restored model has every trained weight."""
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_images"))
  config = registry.ModelConfig(name="pixelcnn", latent_dim=4,
                                resnet_channels=8, pixelcnn_layers=3,
                                pixelcnn_channels=8)
  batch = next(iter(dataset.batches("test", 4)))
  trained, fresh = (registry.build_vae(config, dataset) for _ in range(2))
  for vae in (trained, fresh):
    vae.log_likelihood(batch, vae.encode(batch)[0])
  for variable in trained.variables:
    variable.assign(variable + 0.5)
  path = tf.train.Checkpoint(vae=trained).save(str(tmp_path / "ckpt"))
  tf.train.Checkpoint(vae=fresh).restore(path).assert_existing_objects_matched()
  assert len(fresh.variables) == len(trained.variables) > 20
  for a, b in zip(trained.variables, fresh.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
