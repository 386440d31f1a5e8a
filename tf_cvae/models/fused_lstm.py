"""An LSTM layer whose gradient TensorFlow does not have to derive step by step.

`FusedLSTM` holds the weights of `keras.layers.LSTM` (a `keras.layers.LSTMCell`
named lstm_cell: kernel [in, 4H], recurrent_kernel [H, 4H], bias [4H], gates
i, f, c, o), so checkpoints of either layer load into the other, and computes:

  forward:  the input projection x @ W + b of all timesteps in one matmul,
            then a loop of h @ U and the gate nonlinearities;
  backward: a reverse loop that carries only dh and dc (one [B, 4H] x [4H, H]
            matmul per step), then dU = h_prev^T dz as one matmul over all
            timesteps; dW, db and dx follow from autodiff of the projection,
            also one matmul each.

Autodiff through a `tf.while_loop` computes dU one small matmul per step,
which is where TensorFlow spends an LSTM's training time on CPU (one LSTM
layer, T40 B32 H512, forward and backward: 85 ms with autodiff through the
loop, 44 ms this way, with gradients equal within 1e-6).

Masking follows keras.layers.LSTM: a masked step keeps h and c (and outputs
the kept h). A sentence padded after its end therefore ends with the state of
its last real token. (Keras outputs zeros at a masked first step; this layer
outputs the initial h there. Sentences here always start with <s>.)
"""

import keras
import tensorflow as tf

from tf_cvae import errors

IMPLEMENTATIONS = ("auto", "fused", "keras")


def resolve_impl(setting: str) -> str:
  """"fused" or "keras" for an `lstm_impl` setting.

  "auto": keras.layers.LSTM where a GPU is present (its cuDNN kernel is
  faster there), else FusedLSTM (on CPU its training step is about twice as
  fast as Keras's; see BENCHMARKS.md).
  """
  if setting not in IMPLEMENTATIONS:
    raise errors.InputError(f"lstm_impl must be one of "
                            f"{', '.join(IMPLEMENTATIONS)}, got {setting!r}")
  if setting != "auto":
    return setting
  return "keras" if tf.config.list_physical_devices("GPU") else "fused"


def lstm(units: int, impl: str = "auto", **kwargs) -> keras.layers.Layer:
  """An LSTM layer of implementation `impl` (see resolve_impl); the keyword
  arguments are those both layers take (return_sequences, initializers,
  unit_forget_bias, name). Both hold the same variables under the same
  checkpoint names."""
  if resolve_impl(impl) == "fused":
    return FusedLSTM(units, **kwargs)
  return keras.layers.LSTM(units, **kwargs)


def _split_gates(gates):
  """[..., 4H] -> i, f, g, o, each [..., H]."""
  return tf.split(gates, 4, axis=-1)


def _forward_loop(xw, h0, c0, recurrent_kernel, mask):
  """Runs the recurrence; time-major throughout.

  Args:
    xw: [T, B, 4H] input projections x_t @ W + b.
    h0, c0: [B, H] initial state.
    recurrent_kernel: [H, 4H].
    mask: None, or bool [T, B, 1] (True: a real step; False: keep the state).

  Returns:
    (sigmoids [T, B, 4H] of every gate's input (i, f, o used), g [T, B, H]
    the cell input tanh(z_c), h [T, B, H], c [T, B, H]).
  """
  steps = tf.shape(xw)[0]
  units = tf.shape(h0)[-1]

  def body(t, h, c, tas):
    z = xw[t] + tf.matmul(h, recurrent_kernel)
    gates = tf.sigmoid(z)
    i, f, _, o = _split_gates(gates)
    g = tf.tanh(z[:, 2 * units:3 * units])
    c_new = f * c + i * g
    h_new = o * tf.tanh(c_new)
    if mask is not None:
      c_new = tf.where(mask[t], c_new, c)
      h_new = tf.where(mask[t], h_new, h)
    tas = [ta.write(t, x) for ta, x in zip(tas, (gates, g, h_new, c_new))]
    return [t + 1, h_new, c_new, tas]

  tas = [tf.TensorArray(xw.dtype, size=steps) for _ in range(4)]
  # maximum_iterations lets XLA size the accumulators TensorFlow adds to the
  # loop under a persistent gradient tape (the train step's separate clip).
  _, _, _, tas = tf.while_loop(lambda t, *_: t < steps, body,
                               [tf.constant(0), h0, c0, tas],
                               maximum_iterations=steps)
  return tuple(ta.stack() for ta in tas)


def _backward_loop(dh_seq, dh_last, dc_last, out_scale, dz_scale, c_scale,
                   keep, recurrent_kernel):
  """The reverse loop: (dz [T, B, 4H], dh0 [B, H], dc0 [B, H]).

  With d = dh_t (from the output and from step t + 1) and dc from step t + 1:
    dct  = dc + d * out_scale_t                  (dc through h_t = o tanh c_t)
    dz_t = [dct, dct, dct, d] * dz_scale_t       (pre-activation gradients)
    dc  <- dct * c_scale_t,  dh <- dz_t @ U^T
  where the scales fold in the gate derivatives and the mask; at a masked
  step (keep_t, bool [B, 1], False) dh and dc pass through unchanged instead.
  """
  steps = tf.shape(dh_seq)[0]
  # A transposed operand slowed oneDNN's small matmul down: transpose once.
  recurrent_t = tf.transpose(recurrent_kernel)

  def body(t, dh, dc, dz_ta):
    d = dh + dh_seq[t]
    dct = dc + d * out_scale[t]
    dz = tf.concat([dct, dct, dct, d], axis=-1) * dz_scale[t]
    dc_prev = dct * c_scale[t]
    dh_prev = tf.matmul(dz, recurrent_t)
    if keep is not None:
      dc_prev = tf.where(keep[t], dc_prev, dc)
      dh_prev = tf.where(keep[t], dh_prev, d)
    return t - 1, dh_prev, dc_prev, dz_ta.write(t, dz)

  _, dh0, dc0, dz_ta = tf.while_loop(
      lambda t, *_: t >= 0, body,
      [steps - 1, dh_last, dc_last,
       tf.TensorArray(dh_seq.dtype, size=steps)])
  return dz_ta.stack(), dh0, dc0


def lstm_recurrence(xw, h0, c0, recurrent_kernel, mask=None):
  """The LSTM recurrence with the hand-written gradient.

  Args:
    xw: [T, B, 4H] input projections (x_t @ W + b), time-major.
    h0, c0: [B, H] initial state.
    recurrent_kernel: [H, 4H] (a tensor, not a variable).
    mask: None, or bool [T, B, 1]: True for real steps, False for padding
      (the state is kept).

  Returns:
    (h [T, B, H] outputs, h_T [B, H], c_T [B, H]); differentiable w.r.t.
    xw, h0, c0 and recurrent_kernel.
  """

  @tf.custom_gradient
  def recurrence(xw, h0, c0, recurrent_kernel):
    gates, g, h_seq, c_seq = _forward_loop(xw, h0, c0, recurrent_kernel, mask)

    def grad(dh_seq, dh_last, dc_last):
      h_prev = tf.concat([h0[tf.newaxis], h_seq[:-1]], axis=0)
      c_prev = tf.concat([c0[tf.newaxis], c_seq[:-1]], axis=0)
      dz_scale, out_scale, f = _scales(gates, g, c_prev, mask)
      dz, dh0, dc0 = _backward_loop(
          _zeros_if_none(dh_seq, h_seq), _zeros_if_none(dh_last, h0),
          _zeros_if_none(dc_last, c0), out_scale, dz_scale, f, mask,
          recurrent_kernel)
      units4 = tf.shape(dz)[-1]
      d_recurrent = tf.matmul(tf.reshape(h_prev, [-1, tf.shape(h0)[-1]]),
                              tf.reshape(dz, [-1, units4]), transpose_a=True)
      return dz, dh0, dc0, d_recurrent

    return (h_seq, h_seq[-1], c_seq[-1]), grad

  return recurrence(xw, h0, c0, recurrent_kernel)


def _scales(gates, g, c_prev, mask):
  """The backward loop's factors from the forward's activations: dz_scale
  [T, B, 4H] (zero at masked steps), out_scale [T, B, H], f [T, B, H]."""
  i, f, _, o = _split_gates(gates)
  tanh_c = tf.tanh(f * c_prev + i * g)
  dz_scale = tf.concat([g * i * (1 - i), c_prev * f * (1 - f),
                        i * (1 - g * g), tanh_c * o * (1 - o)], axis=-1)
  out_scale = o * (1 - tanh_c * tanh_c)
  if mask is not None:   # no gradient into a masked step's gates
    dz_scale = tf.where(mask, dz_scale, 0.0)
  return dz_scale, out_scale, f


def _zeros_if_none(gradient, like):
  return tf.zeros_like(like) if gradient is None else gradient


class FusedLSTM(keras.layers.Layer):
  """keras.layers.LSTM (tanh, sigmoid gates, no dropout) with a fast gradient.

  Call with inputs [B, T, D], optional `mask` bool [B, T] and `initial_state`
  [h0, c0] (each [B, H]; zeros by default). Returns the outputs [B, T, H]
  (`return_sequences`) or the last output [B, H], followed by [h_T, c_T]
  when `return_state`.
  """

  def __init__(self, units: int, return_sequences: bool = False,
               return_state: bool = False, kernel_initializer="glorot_uniform",
               recurrent_initializer="orthogonal", bias_initializer="zeros",
               unit_forget_bias: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.return_sequences = return_sequences
    self.return_state = return_state
    self.supports_masking = True
    self.cell = keras.layers.LSTMCell(
        units, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias,
        name="lstm_cell")

  def build(self, input_shape):
    if not self.cell.built:   # sampling may have stepped the cell already
      self.cell.build(input_shape)

  def call(self, inputs, mask=None, initial_state=None, training=False):
    del training  # no dropout inside the layer
    batch = tf.shape(inputs)[0]
    if initial_state is None:
      initial_state = [tf.zeros([batch, self.units], inputs.dtype)] * 2
    h0, c0 = (tf.convert_to_tensor(s) for s in initial_state)
    steps = tf.shape(inputs)[1]
    time_major = tf.reshape(tf.transpose(inputs, [1, 0, 2]),
                            [-1, inputs.shape[-1]])
    xw = tf.reshape(tf.matmul(time_major, self.cell.kernel) + self.cell.bias,
                    [steps, batch, 4 * self.units])
    mask_tm = None
    if mask is not None:
      mask_tm = tf.transpose(tf.cast(mask, tf.bool))[..., tf.newaxis]
    h_seq, h_last, c_last = lstm_recurrence(
        xw, h0, c0, tf.convert_to_tensor(self.cell.recurrent_kernel), mask_tm)
    output = (tf.transpose(h_seq, [1, 0, 2]) if self.return_sequences
              else h_last)
    if self.return_state:
      return output, h_last, c_last
    return output

  def compute_mask(self, inputs, mask=None):
    return mask if self.return_sequences else None
