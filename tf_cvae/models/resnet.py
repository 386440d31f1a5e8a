"""The image encoder of He et al. (2019): a ResNet of three 64-channel stages."""

import keras
import tensorflow as tf

from tf_cvae.models import formats
from tf_cvae.models import layers


class ResidualBlock(layers.Composite):
  """ELU(conv3x3(ELU(conv3x3(x))) + shortcut(x)), the first conv strided.

  [B, H, W, C_in] -> [B, H / stride, W / stride, channels]; the shortcut is a
  strided 1x1 conv when stride > 1, else the identity (C_in == channels).
  """

  def __init__(self, channels: int, stride: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.conv1 = keras.layers.Conv2D(channels, 3, strides=stride,
                                     padding="same", name="conv1")
    self.conv2 = keras.layers.Conv2D(channels, 3, padding="same", name="conv2")
    self.shortcut = None
    if stride != 1:
      self.shortcut = keras.layers.Conv2D(channels, 1, strides=stride,
                                          name="shortcut")

  def call(self, x: tf.Tensor) -> tf.Tensor:
    residual = x if self.shortcut is None else self.shortcut(x)
    return tf.nn.elu(self.conv2(tf.nn.elu(self.conv1(x))) + residual)


class FirstStage(layers.Composite):
  """The encoder's stem (conv3x3, ELU) and first residual block, at 28x28.

  Called on a batch it returns the global average of its feature map,
  [B, channels]: the hybrid critic's input. `feature_map=True` returns the
  map itself, [B, 28, 28, channels], which the encoder continues from.
  """

  def __init__(self, channels: int, **kwargs):
    super().__init__(**kwargs)
    self.stem = keras.layers.Conv2D(channels, 3, padding="same", name="stem")
    self.block = ResidualBlock(channels, name="block")

  def call(self, batch: dict, training: bool = False,
           feature_map: bool = False) -> tf.Tensor:
    x = self.block(tf.nn.elu(self.stem(2.0 * batch["image"] - 1.0)))
    return x if feature_map else tf.reduce_mean(x, axis=[1, 2])


class ResNetEncoder(layers.Composite):
  """Images -> q(z|x): residual stages at 28x28, 14x14, 7x7, a linear map.

  One residual block per stage (He et al.); the flattened 7x7 map goes
  through one Dense to (mu, logvar). No batch normalization: it would couple
  the examples of a batch (the critic's negatives) and make evaluation
  depend on the batch's make-up. `early` is the stem plus the first stage.
  """

  input_format = formats.Images

  def __init__(self, latent_dim: int, channels: int = 64, **kwargs):
    super().__init__(**kwargs)
    self.early = FirstStage(channels, name="early")
    self.stages = [ResidualBlock(channels, stride=2, name=f"stage{i}")
                   for i in (2, 3)]
    for block in self.stages:     # tf.train.Checkpoint skips Keras 3 lists
      setattr(self, block.name, block)
    self.flatten = keras.layers.Flatten()
    self.to_params = keras.layers.Dense(2 * latent_dim, name="to_params")

  def call(self, batch: dict, training: bool = False):
    """{"image": float32 [batch, 28, 28, 1]} -> (mu, logvar) [batch, latent]."""
    x = self.early(batch, training=training, feature_map=True)
    for block in self.stages:
      x = block(x)
    return tuple(tf.split(self.to_params(self.flatten(x)), 2, axis=-1))
