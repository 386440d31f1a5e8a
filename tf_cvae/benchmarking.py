"""Speed of the real train step against the machine's matmul peak.

`run(BenchConfig) -> dict` builds every critic's TrainStep with build.py (as
training does), times it (round-robin in one process after warm-up), counts
its FLOPs from the shapes and divides by the fp32 matmul peak measured in the
same process; also the IW-NLL's speed and memory, and the input pipeline's.
For text models, a PyTorch implementation of He et al.'s LSTM-VAE
(torch_reference.py) at the same shapes is timed in the same rounds.
"""

import dataclasses
import importlib.util
import os
import platform
import threading

import keras
import numpy as np
import tensorflow as tf

from tf_cvae import critics
from tf_cvae import metrics
from tf_cvae import objective
from tf_cvae.data import base as data_base
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry
from tf_cvae.models import vae as vae_lib
from tf_cvae.training import build
from tf_cvae.training import config as config_lib
from tf_cvae.training import timing

CRITICS = ("none", "self", "hybrid", "nn", "model", "aggressive")
# The row of the PyTorch reference (torch_reference.py) of the plain step.
TORCH = "pytorch reference"


# The benchmark's model unless told otherwise: He et al.'s text LSTM at half
# the paper's size (embedding 256, hidden 512); the rest as ModelConfig's.
MODEL = registry.ModelConfig(name="lstm", embed_dim=256, hidden_dim=512)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """The model, the synthetic text's sizes (see synthetic_dataset) and what
  to measure; `steps` timed steps per repeat."""
  model: registry.ModelConfig = MODEL
  batch_size: int = 32
  seq_len: int = 40
  vocab_size: int = 5000
  critics: tuple = CRITICS
  jit_compile: str = "auto"             # on | off | auto (build.py's rule)
  steps: int = 5
  repeats: int = 5
  compare: bool = True        # the plain step also XLA flipped, Keras LSTMs
  torch_reference: bool = True  # text: also time the PyTorch reference step
  iw_samples: int = 500
  iw_chunk_size: int = 50
  iw_repeats: int = 3             # rounds of the IW-NLL, before and after
  eval_examples: int = 8
  memory_iw_samples: tuple = (50, 200, 500)
  pipeline_batches: int = 100
  seed: int = 0

  @property
  def data_kind(self) -> str:
    """"text" or "image": what the model's registry entry models."""
    return registry.MODELS[self.model.name][0]


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU's model name, "with AVX-512" where its flags say so (ratios to
  PyTorch differ between CPUs); platform.processor() without /proc."""
  try:
    with open(cpuinfo, encoding="utf-8") as f:
      first = f.read().split("\n\n")[0]        # the first processor's block
  except OSError:
    first = ""
  fields = {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in first.splitlines())}
  avx512 = "avx512f" in fields.get("flags", "").split()
  return (fields.get("model name") or platform.processor() or "unknown CPU"
          ) + (" with AVX-512" if avx512 else "")


def measure_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
  """Best fp32 GFLOP/s of a [size, size] x [size, size] tf.matmul."""
  a = tf.random.normal([size, size])
  matmul = tf.function(lambda a: tf.reduce_sum(tf.matmul(a, a)[0]))
  best = min(timing.seconds(lambda: float(matmul(a)))
             for _ in range(repeats + 1))
  return 2 * size**3 / best / 1e9


def synthetic_dataset(config: BenchConfig, num_examples: int):
  """Random sentences (lengths seq_len / 2 .. seq_len, <s> and </s> in)
  over vocab_size ids, or random pixel probabilities (dynamic binarization)."""
  rng = np.random.default_rng(config.seed)
  if config.data_kind == "image":
    images = rng.random((num_examples, 28, 28, 1), dtype=np.float32)
    return data_base.ImageDataset("bench", {s: images for s in data_base.SPLITS},
                                  {s: "dynamic" for s in data_base.SPLITS})
  words = [f"w{i}" for i in range(config.vocab_size - len(vocab_lib.SPECIALS))]
  lengths = rng.integers(config.seq_len // 2, config.seq_len,
                         num_examples, endpoint=True)
  lengths[0] = config.seq_len              # one sentence of the longest shape
  sentences = [np.concatenate([[vocab_lib.BOS_ID], rng.integers(
      len(vocab_lib.SPECIALS), config.vocab_size, n - 2), [vocab_lib.EOS_ID]]
                              ).astype(np.int32) for n in lengths]
  return data_base.TextDataset("bench", vocab_lib.Vocabulary(words),
                               {s: sentences for s in data_base.SPLITS})


def bench_batch(config: BenchConfig, dataset) -> dict:
  """The timed batch: text padded to seq_len (its longest shape)."""
  batch = next(iter(dataset.batches("train", config.batch_size)))
  if config.data_kind == "text":
    width = config.seq_len - batch["tokens"].shape[1]
    batch = {"tokens": tf.pad(batch["tokens"], [[0, 0], [0, width]])}
  return batch


def _train_config(config: BenchConfig, critic: str, **overrides):
  fields = dict(
      model=config.model, objective=objective.ObjectiveConfig(   # fixed
          critic_weight=0.0 if critic in ("none", "aggressive") else 3.0,
          critic_target=critics.NO_TARGET),
      critic=critic if critic in critics.CRITICS else "none",
      critic_side="model" if critic == "model" else "inference",
      aggressive=critic == "aggressive", batch_size=config.batch_size,
      jit_compile=config.jit_compile, seed=config.seed)
  fields.update(overrides)
  return config_lib.TrainConfig(**fields)


def timed_fns(config: BenchConfig, dataset, batch) -> dict:
  """name -> (zero-argument step function, critic, built TrainStep) of
  config.critics (and, with config.compare, the plain step's variants)."""
  flip = ("off" if build.resolve_jit_compile(config.jit_compile,
                                             config.model.name) else "on")
  variants = {c: (c, {}) for c in config.critics}
  if config.compare:
    variants[f"none, XLA {flip}"] = ("none", {"jit_compile": flip})
    if config.data_kind == "text" and fused_lstm.resolve_impl(
        config.model.lstm_impl) == "fused":
      variants["none, keras LSTM"] = ("none", {"model": dataclasses.replace(
          config.model, lstm_impl="keras")})
  fns = {}
  for name, (critic, overrides) in variants.items():
    keras.utils.set_random_seed(config.seed)
    step = build.build_train_step(_train_config(config, critic, **overrides),
                                  dataset)
    step.build(batch)
    fns[name] = ((lambda step=step: (step(batch, "encoder"), step(
        batch, "decoder"))) if critic == "aggressive" else (
            lambda step=step: step(batch)), critic, step)
  return fns


def torch_available() -> bool:
  """Whether PyTorch is installed (the `bench` extra)."""
  return importlib.util.find_spec("torch") is not None


def torch_info() -> dict:
  """The installed PyTorch's version and its intra-op threads."""
  import torch  # optional: only where torch_available()
  return {"torch_version": torch.__version__,
          "torch_threads": torch.get_num_threads()}


def torch_step(config: BenchConfig, batch: dict):
  """The reference step (torch_reference.train_step_fn) at the text model's
  shapes on the same batch, or None: not text, not asked for, or no torch."""
  if (config.data_kind != "text" or not config.torch_reference
      or not torch_available()):
    return None
  from tf_cvae import torch_reference  # imports torch
  model = config.model
  return torch_reference.train_step_fn(
      batch["tokens"].numpy(), config.vocab_size, model.embed_dim,
      model.hidden_dim, model.latent_dim, model.decoder_dropout,
      seed=config.seed)


def _lstm_flops(batch, time_steps, inputs, units):
  return 2 * batch * time_steps * (inputs + units) * 4 * units


def _encoder_flops(vae, rows: int, t: int) -> int:
  """Forward matmul FLOPs of the LSTM encoder on [rows, t] tokens."""
  e, h = vae.encoder.embedding.output_dim, vae.encoder.lstm.units
  return _lstm_flops(rows, t, e, h) + 2 * rows * h * 2 * vae.latent_dim


def _decoder_flops(vae, rows: int, t: int) -> int:
  """Forward matmul FLOPs of the LSTM decoder predicting t - 1 tokens of
  [rows, t], fed z at every step."""
  decoder, z_dim = vae.decoder, vae.latent_dim
  e, h = decoder.embedding.output_dim, decoder.lstm.units
  return ((t - 1) * (_lstm_flops(rows, 1, e + z_dim, h)
                     + 2 * rows * h * decoder.to_vocab.units)
          + 2 * rows * z_dim * h)


def _graph_flops(fn, *args) -> int:
  """2 m n k of every MatMul and Conv2D of fn's graph (loops not entered)."""
  total = 0
  for op in tf.function(fn).get_concrete_function(*args).graph.get_operations():
    if op.type == "MatMul":
      k = op.inputs[0].shape[0 if op.get_attr("transpose_a") else 1]
      total += 2 * op.outputs[0].shape.num_elements() * k
    elif op.type == "Conv2D":
      window = op.inputs[1].shape[:3].num_elements()   # kh * kw * c_in
      total += 2 * op.outputs[0].shape.num_elements() * window
  return total


def _critic_flops(critic, batch, z, text_len) -> int:
  """Forward FLOPs of a critic: heads and scores (graph), own LSTM's loop."""
  if critic is None:
    return 0
  total = _graph_flops(lambda b, z: critic.score(critic.x_side(b, z, z), z),
                       batch, z)
  for layer in critic._flatten_layers():
    if isinstance(layer, (keras.layers.LSTM, fused_lstm.FusedLSTM)):
      inputs = (0 if isinstance(layer, fused_lstm.FusedLSTM)  # in the graph
                else layer.cell.kernel.shape[0])
      total += _lstm_flops(z.shape[0], text_len, inputs, layer.cell.units)
  return total


def count_flops(step, batch, kind: str) -> dict:
  """FLOPs of one step by part: a trained part costs 3 x its forward."""
  vae = step.vae
  z = tf.zeros([next(iter(batch.values())).shape[0], vae.latent_dim])
  if "tokens" in batch:
    b, t = batch["tokens"].shape
    enc, dec = _encoder_flops(vae, b, t), _decoder_flops(vae, b, t)
    vocab = vae.decoder.to_vocab.units
    sampling = dec            # word by word: the same matmuls
  else:
    t = None
    enc = _graph_flops(vae.encode, batch)
    dec = _graph_flops(vae.log_likelihood, batch, z)
    sampling = 28 * dec       # 28 vertical passes, 784 one-row horizontal ones
  parts = {"encoder": enc, "decoder": dec,
           "critic": _critic_flops(step.critic, batch, z, t)}
  if kind == "aggressive":    # encoder update (decoder: input grads only)
    return dict(parts, step=(3 * enc + 2 * dec) + (enc + 3 * dec))
  total = 3 * (enc + dec + parts["critic"])
  if step.with_critic and step.critic is not None:
    # The inference critic's gradient, clipped apart: a 2nd encoder backward.
    parts.update(critic_encoder_backward=2 * enc)
    total += 2 * enc
  if kind == "model":         # forward-only sampling; relaxed pass trained
    critic = _critic_flops(step.model_critic, batch, z, t)
    if t:                     # expected embeddings: probs [B, T, V] @ E
      critic += 2 * b * t * vocab * (
          step.model_critic.x_features.embedding.output_dim)
    parts.update(sampling=sampling, model_critic=critic)
    total += sampling + 3 * (dec + critic)
  return dict(parts, step=total)


def iw_flops(vae, batch, samples: int) -> dict | None:
  """Matmul FLOPs of one IW-NLL pass over `batch` with `samples` per example
  (LSTM decoder; None for others): "shared" as sample_log_likelihood scores
  (embeddings' input projection once, per sample the recurrence and the
  vocabulary projection at every position), "repeated" with the batch
  repeated per sample; both include the encoder's one forward."""
  decoder = getattr(vae, "decoder", None)
  if not hasattr(decoder, "sample_log_likelihood"):   # as vae_lib decides
    return None
  b, t = batch["tokens"].shape
  rows, z_dim = samples * b, vae.latent_dim
  e, h = decoder.embedding.output_dim, decoder.lstm.units
  encoder = _encoder_flops(vae, b, t)
  shared = ((t - 1) * (_lstm_flops(rows, 1, 0, h)       # recurrence
                       + 2 * rows * h * decoder.to_vocab.units
                       + 2 * b * e * 4 * h)             # embeddings, once
            + 2 * rows * z_dim * 4 * h + 2 * rows * z_dim * h)  # z: gates, cell
  return {"shared": encoder + shared,
          "repeated": encoder + _decoder_flops(vae, rows, t)}


def _rates(flops: int, seconds: float, peak: float) -> dict:
  """GFLOP/s of `flops` in `seconds`, and its share of `peak` (GFLOP/s)."""
  achieved = flops / 1e9 / seconds
  return {"achieved_gflops": achieved, "peak_gflops": peak,
          "fraction_of_peak": achieved / peak}


def memory_in_use() -> int:
  """Bytes: the GPU allocator's with a GPU, else the process RSS (/proc)."""
  if tf.config.list_physical_devices("GPU"):
    return tf.config.experimental.get_memory_info("GPU:0")["current"]
  with open("/proc/self/statm") as f:     # pages: size, resident, ...
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mb(fn, start: int | None = None) -> float:
  """Peak memory_in_use() while fn() runs, in MB above `start` (default:
  at the call): the GPU allocator's peak, or the RSS sampled every 2 ms."""
  start = memory_in_use() if start is None else start
  if tf.config.list_physical_devices("GPU"):
    tf.config.experimental.reset_memory_stats("GPU:0")
    fn()
    return (tf.config.experimental.get_memory_info("GPU:0")["peak"]
            - start) / 2**20
  samples, done = [memory_in_use()], threading.Event()
  thread = threading.Thread(daemon=True, target=lambda: [
      samples.append(memory_in_use())
      for _ in iter(lambda: done.wait(0.002), True)])
  thread.start()
  fn()
  done.set()
  thread.join()
  return (max(samples + [memory_in_use()]) - start) / 2**20


def measure_evaluation(vae, dataset, config: BenchConfig,
                       peak: float) -> dict:
  """IW-NLL examples/s at config.iw_samples, config.iw_repeats rounds; peak
  memory per sample count. With a decoder that shares work across samples
  (the LSTM's), its scoring ("after") and the batch repeated per sample
  ("before") in turn, with the matmul FLOPs of each (iw_flops) and the
  shared one's GFLOP/s against `peak` (GFLOP/s)."""
  batch = next(iter(dataset.batches("test", config.eval_examples)))
  estimators = {
      "after": metrics.ImportanceWeightedNLL(vae, config.iw_chunk_size)}
  counted = iw_flops(vae, batch, config.iw_samples)
  if counted is not None:      # else "after" repeats the batch already
    estimators["before"] = metrics.ImportanceWeightedNLL(
        vae, config.iw_chunk_size, vae_lib.repeated_log_likelihood)
  nll = lambda n, name="after": float(tf.reduce_sum(
      estimators[name](batch, n)))
  before = memory_in_use()               # before the first chunk (and trace)
  memory = {str(n): round(peak_memory_mb(lambda n=n: nll(n), before), 1)
            for n in sorted(config.memory_iw_samples)}
  if "before" in estimators:
    nll(1, "before")                     # traced
  rounds = {name: [] for name in ("before", "after") if name in estimators}
  for _ in range(config.iw_repeats):     # in turn
    for name, seconds in rounds.items():
      seconds.append(timing.seconds(lambda: nll(config.iw_samples, name)))
  seconds = {name: timing.median_and_best(r)[0] for name, r in rounds.items()}
  per_second = {name: config.eval_examples / s for name, s in seconds.items()}
  gpu = tf.config.list_physical_devices("GPU")
  shared = {} if counted is None else dict(
      flops=counted["shared"], flops_before=counted["repeated"],
      **_rates(counted["shared"], seconds["after"], peak),
      examples_per_second_before=per_second["before"],
      speedup=timing.median_ratio(rounds["before"], rounds["after"]))
  return {**shared, "iw_samples": config.iw_samples, "iw_chunk_size":
          config.iw_chunk_size, "examples": config.eval_examples,
          **({"tokens": int(tf.size(batch["tokens"]))} if "tokens" in batch
             else {}),
          "examples_per_second": per_second["after"],
          "peak_memory_mb_by_iw_samples": memory, "memory_measured_as": (
              "GPU allocator" if gpu else "process RSS") + " peak above the "
          "memory in use before the first call"}


def measure_pipeline(dataset, config: BenchConfig) -> float:
  """Examples/s of the training tf.data pipeline alone (a whole epoch)."""
  batches = lambda: dataset.batches("train", config.batch_size, shuffle=True,
                                    seed=config.seed, drop_remainder=True)
  count = sum(int(next(iter(b.values())).shape[0]) for b in batches())
  return count / timing.seconds(lambda: [b for b in batches()])


def run(config: BenchConfig) -> dict:
  """Times every critic of config.critics (and the plain-step variants).

  Returns {name: {seconds_per_step, flops_per_step, achieved_gflops,
  peak_gflops, fraction_of_peak, ratio_to_plain (the median over rounds of
  the time over the plain step's), ...}}; the plain VAE's entry ("none")
  also holds "evaluation" and "pipeline". For text, with torch installed,
  also a TORCH row: the PyTorch reference step at the same shapes, timed
  right after the plain step in every round, with plain_over_reference.
  """
  dataset = synthetic_dataset(config, config.pipeline_batches
                              * config.batch_size + config.eval_examples)
  batch = bench_batch(config, dataset)
  peak = measure_peak_gflops()
  fns = timed_fns(config, dataset, batch)
  timed = {}
  reference = torch_step(config, batch) if "none" in fns else None
  for name, (fn, _, _) in fns.items():
    timed[name] = fn
    if name == "none" and reference:     # right after the plain step
      timed[TORCH] = reference
  load = os.getloadavg()[0]        # other processes' share shows here
  rounds, cores = timing.round_robin(timed, config.steps, config.repeats)
  peak = max(peak, measure_peak_gflops())

  def row(name, flops, jit_compile):
    median, best = timing.median_and_best(rounds[name])
    return {"seconds_per_step": median, "flops_per_step": flops["step"],
            "flops_by_part": flops, **_rates(flops["step"], median, peak),
            "best_seconds_per_step": best, "best_fraction_of_peak":
            flops["step"] / 1e9 / best / peak, "cores_busy_while_timing": cores,
            "load_average_before_timing": load,
            "ratio_to_plain": (timing.median_ratio(rounds[name], rounds["none"])
                               if "none" in rounds else None),
            "jit_compile": jit_compile}
  results = {name: row(name, count_flops(step, batch, critic),
                       step.jit_compile)
             for name, (_, critic, step) in fns.items()}
  if reference and "none" in results:   # the same shapes: the same FLOPs
    results[TORCH] = dict(
        row(TORCH, results["none"]["flops_by_part"], False), **torch_info(),
        plain_over_reference=timing.median_ratio(rounds["none"],
                                                 rounds[TORCH]))
  if "none" in results:
    plain = results["none"]["seconds_per_step"]
    evaluation = measure_evaluation(fns["none"][2].vae, dataset, config,
                                    peak)
    results["none"].update(
        evaluation=evaluation,
        pipeline={"examples_per_second": measure_pipeline(dataset, config),
                  "step_examples_per_second": config.batch_size / plain})
  return results

