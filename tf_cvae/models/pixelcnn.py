"""The image decoder of He et al. (2019): a gated PixelCNN.

It is the gated PixelCNN of van den Oord et al. (2016) with separate
vertical and horizontal stacks, so its receptive field has no blind spot:
the logit of pixel (i, j) depends on every pixel above row i within the
receptive field and on the pixels left of it in row i, never on (i, j) or
later ones. z enters every gated layer through a 4-channel 28x28 feature map.
Pixels enter as 2x - 1 in {-1, 1}, so zero padding reads as
"outside the image".
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae import errors
from tf_cvae.models import layers

tfd = tfp.distributions

# He et al.'s kernel sizes of the 12 gated layers.
PAPER_KERNEL_SIZES = (9, 9, 9, 7, 7, 7, 5, 5, 5, 3, 3, 3)


def spread_kernel_sizes(num_layers: int) -> tuple[int, ...]:
  """The paper's schedule spread over `num_layers` layers (4 -> 9, 7, 5, 3)."""
  n = len(PAPER_KERNEL_SIZES)
  return tuple(PAPER_KERNEL_SIZES[i * n // num_layers]
               for i in range(num_layers))


def _gate(pre_activation: tf.Tensor) -> tf.Tensor:
  """tanh(a) * sigmoid(b) of the two channel halves: [..., 2C] -> [..., C]."""
  a, b = tf.split(pre_activation, 2, axis=-1)
  return tf.tanh(a) * tf.sigmoid(b)


class CausalConv(layers.Composite):
  """A convolution that sees only earlier pixels (raster order).

  "vertical": a (k // 2 + 1) x k kernel over rows i - k // 2 .. i, all
  columns j +- k // 2; "horizontal": a 1 x (k // 2 + 1) kernel over row i,
  columns j - k // 2 .. j. With `exclude_center` (mask "A") the window moves
  up (left) by one and loses row i (pixel j): k // 2 rows (columns).
  Cropped kernels, not masked ones: no multiply-by-zero work.
  `direction` is "vertical" or "horizontal"; [B, H, W, C] -> [B, H, W, filters].
  """

  def __init__(self, filters: int, kernel_size: int, direction: str,
               exclude_center: bool, **kwargs):
    super().__init__(**kwargs)
    if kernel_size < 3 or kernel_size % 2 == 0:
      raise errors.InputError(f"kernel_size must be odd and >= 3, got {kernel_size}")
    half = kernel_size // 2
    reach = half if exclude_center else half + 1
    self.direction, self.shift = direction, int(exclude_center)
    if direction == "vertical":
      shape = (reach, kernel_size)
      self.padding = [[0, 0], [reach - 1 + self.shift, 0], [half, half], [0, 0]]
    else:
      shape = (1, reach)
      self.padding = [[0, 0], [0, 0], [reach - 1 + self.shift, 0], [0, 0]]
    self.conv = keras.layers.Conv2D(filters, shape, padding="valid",
                                    name="conv")

  def call(self, x: tf.Tensor) -> tf.Tensor:
    if self.shift:  # drop the last row (column): the window moved by one
      x = x[:, :-1] if self.direction == "vertical" else x[:, :, :-1]
    return self.conv(tf.pad(x, self.padding))


class GatedLayer(layers.Composite):
  """One gated layer of both stacks, conditioned on a feature map of z.

  v' = gate(V * v + C_v * cond);  h' = h + W(gate(H * h + U * (V * v) +
  C_h * cond)), where V, H are causal convs, U, W, C_v, C_h 1x1 convs and
  gate(a, b) = tanh(a) * sigmoid(b). The vertical stack at row i has only
  seen rows < i, so linking it into the horizontal stack at the same
  position is safe. The first layer ("A") has no residual (its input is the
  image itself, current pixel included). The decoder runs the two stacks as
  separate passes (sampling reruns only the horizontal one).
  """

  def __init__(self, channels: int, kernel_size: int, first: bool, **kwargs):
    super().__init__(**kwargs)
    self.first = first
    self.vertical = CausalConv(2 * channels, kernel_size, "vertical", first,
                               name="vertical")
    self.horizontal = CausalConv(2 * channels, kernel_size, "horizontal",
                                 first, name="horizontal")
    self.vertical_to_horizontal = keras.layers.Conv2D(
        2 * channels, 1, name="vertical_to_horizontal")
    self.cond_vertical = keras.layers.Conv2D(2 * channels, 1, use_bias=False,
                                             name="cond_vertical")
    self.cond_horizontal = keras.layers.Conv2D(
        2 * channels, 1, use_bias=False, name="cond_horizontal")
    self.horizontal_out = keras.layers.Conv2D(channels, 1,
                                              name="horizontal_out")

  def vertical_pass(self, vertical: tf.Tensor, cond: tf.Tensor):
    """(v [B, H, W, C_in], cond) -> (v' [B, H, W, C], link [B, H, W, 2C]).

    link = U * (V * v) + C_h * cond: all the horizontal stack needs from v.
    """
    v = self.vertical(vertical) + self.cond_vertical(cond)
    return _gate(v), self.vertical_to_horizontal(v) + self.cond_horizontal(cond)

  def horizontal_pass(self, horizontal: tf.Tensor, link: tf.Tensor):
    """(h [B, R, W, C_in], link [B, R, W, 2C]) -> h' [B, R, W, C].

    Row-local: any R rows of h and link give those rows of h'.
    """
    h = self.horizontal_out(_gate(self.horizontal(horizontal) + link))
    return h if self.first else h + horizontal


class GatedPixelCNNDecoder(layers.Composite):
  """z -> autoregressive Bernoulli pixels: a gated PixelCNN (He et al. 2019).

  z [B, latent] -> Dense -> a [B, 28, 28, cond_channels] map conditioning
  every gated layer; `num_layers` gated layers of `channels` channels (first
  mask "A", then "B"), then the output layer ELU -> 1x1 conv -> logits.
  """

  def __init__(self, num_layers: int = 12, channels: int = 32,
               kernel_sizes: tuple[int, ...] | None = None,
               cond_channels: int = 4, image_shape=(28, 28, 1), **kwargs):
    super().__init__(**kwargs)
    sizes = tuple(kernel_sizes or spread_kernel_sizes(num_layers))
    if len(sizes) != num_layers:
      raise errors.InputError(f"{num_layers} layers but kernel sizes {sizes}")
    self.image_shape = tuple(image_shape)
    if self.image_shape[-1] != 1:
      raise errors.InputError(f"one channel expected, got image_shape {image_shape}")
    height, width, _ = self.image_shape
    self.to_cond = keras.layers.Dense(height * width * cond_channels,
                                      name="to_cond")
    self.cond_shape = (height, width, cond_channels)
    self.gated = [GatedLayer(channels, k, first=i == 0, name=f"gated{i}")
                  for i, k in enumerate(sizes)]
    for layer in self.gated:      # tf.train.Checkpoint skips Keras 3 lists
      setattr(self, layer.name, layer)
    self.to_logits = keras.layers.Conv2D(1, 1, name="to_logits")

  @staticmethod
  def target(batch: dict) -> tf.Tensor:
    """The pixels: float32 [batch, 28, 28, 1] in {0, 1}."""
    return batch["image"]

  def _condition(self, z: tf.Tensor) -> tf.Tensor:
    """z [B, latent] -> the conditioning map [B, 28, 28, cond_channels]."""
    return tf.reshape(self.to_cond(z), (-1,) + self.cond_shape)

  def _links(self, image: tf.Tensor, cond: tf.Tensor) -> list[tf.Tensor]:
    """The vertical stack: every layer's link [B, 28, 28, 2C]."""
    vertical, links = 2.0 * image - 1.0, []
    for layer in self.gated:
      vertical, link = layer.vertical_pass(vertical, cond)
      links.append(link)
    return links

  def _horizontal(self, image: tf.Tensor, links: list[tf.Tensor]):
    """The horizontal stack on rows [B, R, 28, 1] -> logits [B, R, 28, 1]."""
    horizontal = 2.0 * image - 1.0
    for layer, link in zip(self.gated, links):
      horizontal = layer.horizontal_pass(horizontal, link)
    return self.to_logits(tf.nn.elu(horizontal))

  def logits(self, batch: dict, z: tf.Tensor, training: bool = False):
    """Logits [B, 28, 28, 1] of p(x_k = 1 | x_<k, z), teacher-forced."""
    del training  # no dropout or batch statistics
    image = batch["image"]
    return self._horizontal(image, self._links(image, self._condition(z)))

  def likelihood(self, batch: dict, z: tf.Tensor,
                 training: bool = False) -> tfd.Distribution:
    """prod_k p(x_k | x_<k, z): a Bernoulli per pixel; event [28, 28, 1].

    The x_<k are batch's pixels (teacher forcing): score only target(batch).
    """
    logits = self.logits(batch, z, training)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32),
                           reinterpreted_batch_ndims=len(self.image_shape))

  def sample(self, z: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Ancestral samples x ~ p(x|z): float32 [B, 28, 28, 1] in {0, 1}.

    z is [B, latent], seed int32 [2] (stateless: same seed, same images).
    """
    return self._decode_pixels(z, tf.random.stateless_uniform(
        self._batch_shape(z), seed=seed))

  def model_sample(self, batch: dict, z: tf.Tensor, seed: tf.Tensor) -> dict:
    """x ~ p(x|z) for the model critic, {"image": [B, 28, 28, 1]} binary.

    Call it outside any gradient tape: the XLA-compiled sampling loop
    cannot be recorded (and needs no gradient).
    """
    del batch
    return {"image": self.sample(z, seed)}

  def relax(self, sample: dict, z: tf.Tensor, training: bool = False) -> dict:
    """The sample's pixel probabilities under one teacher-forced pass, which
    carry the model critic's gradient to the decoder: {"image": (0, 1)}."""
    return {"image": tf.sigmoid(self.logits(sample, z, training))}

  def generate(self, z: tf.Tensor, seed: tf.Tensor, greedy: bool = False,
               max_length: int = 40) -> dict:
    """Images from z [B, latent]: {"image": float32 [B, 28, 28, 1]} binary,
    by `greedy` or ancestral sampling (stateless, `seed` int32 [2]).
    max_length: unused (pixels, not words)."""
    del max_length
    return {"image": self.greedy(z) if greedy else self.sample(z, seed)}

  def greedy(self, z: tf.Tensor) -> tf.Tensor:
    """Pixel-by-pixel decisions p(x_k = 1 | x_<k, z) > 0.5: [B, 28, 28, 1]."""
    return self._decode_pixels(z, tf.fill(self._batch_shape(z), 0.5))

  def _batch_shape(self, z: tf.Tensor) -> tf.Tensor:
    return tf.concat([tf.shape(z)[:1], self.image_shape], axis=0)

  @tf.function(jit_compile=True)
  def _decode_pixels(self, z: tf.Tensor, thresholds: tf.Tensor) -> tf.Tensor:
    """In raster order, x_k = 1 iff thresholds_k < p(x_k = 1 | x_<k, z).

    The vertical stack at row i sees only rows < i, so it runs once per row
    (28 passes); within the row only the row-local horizontal stack reruns
    (one 1-row pass per pixel): 9x faster than 784 full passes (measured,
    4 layers of 16 channels, 2 CPU cores; XLA gives another 2.5x there).
    """
    cond = self._condition(z)
    height, width, _ = self.image_shape

    def one_row(i, image):
      rows = tf.expand_dims(i, 0)
      links = [tf.gather(link, rows, axis=1)
               for link in self._links(image, cond)]
      row_thresholds = tf.gather(thresholds, rows, axis=1)  # [B, 1, W, 1]

      def one_pixel(j, row):
        probs = tf.sigmoid(self._horizontal(row, links))
        decided = tf.cast(row_thresholds < probs, tf.float32)
        at_j = tf.reshape(tf.one_hot(j, width), (1, 1, width, 1))
        return j + 1, row + at_j * (decided - row)

      _, row = tf.while_loop(lambda j, _: j < width, one_pixel,
                             (tf.constant(0), tf.gather(image, rows, axis=1)))
      at_i = tf.reshape(tf.one_hot(i, height), (1, height, 1, 1))
      return i + 1, image + at_i * (row - image)

    _, image = tf.while_loop(lambda i, _: i < height, one_row,
                             (tf.constant(0), tf.zeros_like(thresholds)))
    return image
