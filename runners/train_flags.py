"""The training flags every training command shares (define_train_flags).

Each flag fills the library config field of the same name; runners turn them
into configs with common.train_config_from_flags.
"""

from tf_cvae_runners import presets

from absl import flags

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae import replicas
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry
from tf_cvae.training import config
from tf_cvae.training import evaluation

# Every flag's default is its config field's: written once, there.
_DATA = data_lib.DataConfig()
_MODEL = registry.ModelConfig()
_OBJECTIVE = objective.ObjectiveConfig()
_EVAL = evaluation.EvalConfig()
_TRAIN = config.TrainConfig()


def define_train_flags() -> None:
  """Defines every flag of a training run (train.py, quickstart.py,
  compare.py), and --preset."""
  presets.define_preset_flag()
  flags.DEFINE_enum("dataset", _DATA.name, data_lib.names(),
                    "Data set to train on.")
  flags.DEFINE_string("data_dir", _DATA.data_dir,
                      "Folder of the real data files "
                      "(default: $TF_CVAE_DATA, else ../shared/data).")
  flags.DEFINE_bool("download", _DATA.download, "Image sets without local "
                    "files: let tensorflow-datasets download them (false: "
                    "read only what tfds prepared before, never the "
                    "network).")
  flags.DEFINE_string("train_file", None, "--dataset=text: the train file, "
                      "one sentence a line. --dataset=images: a folder of "
                      "PNG/JPEG files (class subfolders read as labels), or "
                      "a .npy / .npz file of images [N, H, W(, C)].")
  for split in ("valid", "test"):
    flags.DEFINE_string(f"{split}_file", None,
                        f"--dataset=text: the {split} file, one sentence a "
                        "line; --dataset=images: its folder or array file. "
                        "Unset: held out of --train_file (--held_out).")
  flags.DEFINE_float("held_out", _DATA.held_out, "Own data given as "
                     "--train_file alone: the fraction of it held out "
                     "(seeded by --data_seed) as the valid split, and as "
                     "much again as the test split.", lower_bound=0.001,
                     upper_bound=0.49)
  flags.DEFINE_enum("binarize", _DATA.binarize, ["dynamic", "threshold"],
                    "--dataset=images: dynamic = intensities are Bernoulli "
                    "probabilities, redrawn every epoch for train and drawn "
                    "once for valid and test; threshold = a pixel is 1 when "
                    "its intensity reaches --threshold (static).")
  flags.DEFINE_float("threshold", _DATA.threshold, "--binarize=threshold: "
                     "intensity in [0, 1] from which a pixel is 1.",
                     lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_integer("max_vocab", _DATA.max_vocab,
                       "Cap on vocabulary ids.", lower_bound=5)
  flags.DEFINE_integer("min_count", _DATA.min_count,
                       "Rarer training words become unknown.",
                       lower_bound=1)
  flags.DEFINE_integer("max_length", _DATA.max_length,
                       "Words per sentence at most; longer sentences are "
                       "dropped.", lower_bound=1)
  flags.DEFINE_string("vocab_file", _DATA.vocab_file,
                      "Use this saved vocabulary (a run's "
                      "vocab.txt) instead of building one.")
  flags.DEFINE_enum("model", _MODEL.name, ["auto"] + sorted(registry.MODELS),
                    "Encoder/decoder pair; auto: lstm for text, mlp for "
                    "images.")
  flags.DEFINE_integer("embed_dim", _MODEL.embed_dim,
                       "Word embedding size.", lower_bound=1)
  flags.DEFINE_integer("hidden_dim", _MODEL.hidden_dim,
                       "LSTM / MLP hidden size.",
                       lower_bound=1)
  flags.DEFINE_integer("latent_dim", _MODEL.latent_dim,
                       "Size of z.", lower_bound=1)
  flags.DEFINE_integer("resnet_channels", _MODEL.resnet_channels,
                       "--model=pixelcnn: channels of "
                       "the ResNet encoder's stages.", lower_bound=1)
  flags.DEFINE_integer("pixelcnn_layers", _MODEL.pixelcnn_layers,
                       "--model=pixelcnn: gated "
                       "layers (kernel sizes spread from 9 to 3).",
                       lower_bound=1)
  flags.DEFINE_integer("pixelcnn_channels", _MODEL.pixelcnn_channels,
                       "--model=pixelcnn: channels "
                       "of each gated layer.", lower_bound=1)
  flags.DEFINE_float("decoder_dropout", _MODEL.decoder_dropout,
                     "Dropout of the LSTM decoder.",
                     lower_bound=0.0, upper_bound=0.99)
  flags.DEFINE_enum("critic", _TRAIN.critic, list(critics.CRITICS),
                    "Contrastive critic; none is the plain VAE.")
  flags.DEFINE_enum("critic_side", _TRAIN.critic_side,
                    ["inference", "model", "both"],
                    "Contrast q(x, z) pairs (inference), p(z) p(x|z) pairs "
                    "(model critic, appendix E), or both.")
  flags.DEFINE_float("critic_weight", _OBJECTIVE.critic_weight,
                     "lambda: weight of the critic "
                     "loss (default: the critic's own, tf_cvae/critics.py "
                     "DEFAULTS).", lower_bound=0.0)
  flags.DEFINE_integer("critic_warmup_steps", _OBJECTIVE.critic_warmup_steps,
                       "Linear warm-up of lambda "
                       "from 0 over this many steps.", lower_bound=0)
  flags.DEFINE_integer("num_negatives", _TRAIN.num_negatives,
                       "Queue of earlier batches' "
                       "negatives: K = batch + this.", lower_bound=0)
  flags.DEFINE_float("critic_target", _OBJECTIVE.critic_target,
                     "Nats of the InfoNCE bound c + log K to hold (see "
                     "--critic_constraint; default: the critic's own, "
                     "tf_cvae/critics.py DEFAULTS; inf: no target, a fixed "
                     "lambda).")
  flags.DEFINE_enum("critic_constraint", _OBJECTIVE.critic_constraint,
                    list(objective.CONSTRAINTS), "How --critic_target "
                    "holds: lagrangian = lambda follows dual ascent from "
                    "--critic_weight, rising while the bound's moving "
                    "average is below the target and falling (never below "
                    "0) above it; hinge = a fixed lambda, no critic loss "
                    "once the batch's bound reaches the target.")
  flags.DEFINE_float("critic_lambda_step", _OBJECTIVE.critic_lambda_step,
                     "--critic_constraint=lagrangian: lambda's step per nat "
                     "the bound's average is short of the target, per "
                     "training step.", lower_bound=0.0)
  flags.DEFINE_float("critic_lambda_max", _OBJECTIVE.critic_lambda_max,
                     "--critic_constraint=lagrangian: lambda's ceiling (inf: "
                     "none); a target out of reach then costs the ELBO no "
                     "more than this lambda does.", lower_bound=0.0)
  flags.DEFINE_float("critic_lambda_kp", _OBJECTIVE.critic_lambda_kp,
                     "--critic_constraint=lagrangian: a proportional term, "
                     "lambda per nat the bound's average is short, added to "
                     "the dual-ascent integral at once (damps cycling); 0: "
                     "plain dual ascent.",
                     lower_bound=0.0)
  flags.DEFINE_bool("critic_lambda_follows_lr",
                    _OBJECTIVE.critic_lambda_follows_lr,
                    "--critic_constraint=lagrangian: scale lambda's step "
                    "by the learning rate over its initial value, so each "
                    "halving also halves it (damps cycling late in a run, "
                    "but slows lambda's descent after an early overshoot).")
  flags.DEFINE_float("kl_weight", _OBJECTIVE.kl_weight,
                     "beta: weight of the KL term.",
                     lower_bound=0.0)
  flags.DEFINE_integer("kl_anneal_steps", _OBJECTIVE.kl_anneal_steps,
                       "KL annealing: beta rises "
                       "linearly over this many steps.", lower_bound=0)
  flags.DEFINE_float("kl_anneal_start", _OBJECTIVE.kl_anneal_start,
                     "beta at the start of annealing.",
                     lower_bound=0.0)
  flags.DEFINE_float("free_bits", _OBJECTIVE.free_bits,
                     "Free bits: nats per latent dim under "
                     "which the KL costs nothing.", lower_bound=0.0)
  flags.DEFINE_integer("kl_cycle_steps", _OBJECTIVE.kl_cycle_steps,
                       "Cyclical KL annealing (Fu et al. 2019): steps of "
                       "one cycle, in which beta rises from 0 to --kl_weight "
                       "over the first --kl_cycle_ratio of it, then stays; "
                       "0: none.", lower_bound=0)
  flags.DEFINE_float("kl_cycle_ratio", _OBJECTIVE.kl_cycle_ratio,
                     "Cyclical KL annealing: the part of each cycle beta "
                     "rises in.", lower_bound=1e-6, upper_bound=1.0)
  flags.DEFINE_integer("pretrain_steps", _OBJECTIVE.pretrain_steps,
                       "Encoder pre-training (Li et al. 2019): train as an "
                       "autoencoder (beta 0) for this many steps, then reset "
                       "the decoder to its initial weights and train the "
                       "ELBO (with --free_bits, their setting); 0: none.",
                       lower_bound=0)
  flags.DEFINE_float("bn_gamma", _MODEL.bn_gamma,
                     "BN-VAE (Zhu et al. 2020): batch-normalise the "
                     "posterior means with this fixed scale (and a learned "
                     "shift), which keeps the mean KL at least "
                     "latent_dim * bn_gamma^2 / 2 nats; 0: none.",
                     lower_bound=0.0)
  flags.DEFINE_boolean("aggressive", _TRAIN.aggressive,
                       "He et al.'s aggressive training: "
                       "encoder-only inner loop until it converges.")
  flags.DEFINE_integer("aggressive_max_inner", _TRAIN.aggressive_max_inner,
                       "Inner encoder updates "
                       "per step at most.", lower_bound=1)
  flags.DEFINE_integer("batch_size", _TRAIN.batch_size,
                       "Batch size K (the critic's negatives).",
                       lower_bound=1)
  flags.DEFINE_integer("epochs", _TRAIN.epochs,
                       "Training epochs.", lower_bound=1)
  flags.DEFINE_integer("max_steps", _TRAIN.max_steps,
                       "Stop after this many steps "
                       "(overrides --epochs).", lower_bound=1)
  flags.DEFINE_enum("optimizer", _TRAIN.optimizer, ["auto", "sgd", "adam"],
                    "auto: SGD for text, Adam for images (the paper's).")
  flags.DEFINE_float("learning_rate", _TRAIN.learning_rate,
                     "Default 1.0 (SGD) or 1e-3 (Adam).",
                     lower_bound=0.0)
  flags.DEFINE_float("clip_norm", _TRAIN.clip_norm,
                     "Global norm clip of the negative ELBO's gradient; 0: "
                     "none.",
                     lower_bound=0.0)
  flags.DEFINE_float("critic_clip_norm", _TRAIN.critic_clip_norm,
                     "Global norm clip of the critic loss's gradient, "
                     "apart from the negative ELBO's (--clip_norm); the two "
                     "are then summed (default: --clip_norm; 0: none).",
                     lower_bound=0.0)
  flags.DEFINE_integer("data_seed", _DATA.seed,
                       "Seed of the generated data sets and "
                       "of the fixed test binarization: the same across "
                       "--seed replicates, so they share one test set.")
  flags.DEFINE_integer("seed", _TRAIN.seed,
                       "Seed of data order, init and sampling.")
  flags.DEFINE_boolean("deterministic", _TRAIN.deterministic,
                       "Deterministic TF kernels "
                       "(enable_op_determinism; slower on GPU): the same "
                       "--seed gives the same metrics.json.")
  flags.DEFINE_string("out_dir", None, "Run directory; an existing one "
                      "resumes (default: runs/<dataset>_<model>_<critic>_seed"
                      "<seed>_<hash of the other flags>, so the same command "
                      "resumes the same run).")
  flags.DEFINE_enum("jit_compile", _TRAIN.jit_compile, ["auto", "on", "off"],
                    "XLA for the train step; auto: what measured faster.")
  flags.DEFINE_enum("lstm_impl", _MODEL.lstm_impl,
                    list(fused_lstm.IMPLEMENTATIONS),
                    "LSTM layers: fused (hand-written gradient, fastest on "
                    "CPU), keras (cuDNN on GPU); auto: fused without a GPU.")
  flags.DEFINE_enum("strategy", _TRAIN.strategy, list(replicas.STRATEGIES),
                    "default: one device; mirrored: every local GPU (or the "
                    "CPU split into --num_cpu_devices); multi_worker: one "
                    "process a worker, as TF_CONFIG names them (the chief "
                    "writes --out_dir). The critic's negatives span the "
                    "global batch.")
  flags.DEFINE_integer("max_bad_steps", _TRAIN.max_bad_steps,
                       "Stop (keeping the best "
                       "checkpoint) after this many steps in a row with a "
                       "non-finite loss or gradient; each is skipped.",
                       lower_bound=1)
  flags.DEFINE_integer("num_cpu_devices", _TRAIN.num_cpu_devices,
                       "--strategy=mirrored without "
                       "GPUs: split the host CPU into this many devices.",
                       lower_bound=1)
  flags.DEFINE_integer("iw_samples", _EVAL.iw_samples,
                       "Importance samples of the test "
                       "NLL; 0 skips it.", lower_bound=0)
  flags.DEFINE_integer("iw_chunk_size", _EVAL.iw_chunk_size,
                       "Importance samples per decoder "
                       "pass (bounds memory).", lower_bound=1)
  flags.DEFINE_integer("eval_examples", _EVAL.max_examples,
                       "Evaluate only this many test "
                       "examples.", lower_bound=1)
  flags.DEFINE_integer("log_every", _TRAIN.log_every,
                       "Steps between progress lines.",
                       lower_bound=1)
  flags.DEFINE_integer("checkpoint_every", _TRAIN.checkpoint_every,
                       "Steps between checkpoints.",
                       lower_bound=1)
  flags.DEFINE_integer("lr_patience", _TRAIN.lr_patience,
                       "Halve the learning rate after this "
                       "many epochs without a lower validation loss; 0: "
                       "never.", lower_bound=0)
  flags.DEFINE_integer("lr_warmup_epochs", _TRAIN.lr_warmup_epochs,
                       "Epochs before the patience "
                       "count starts (He et al.: 15).", lower_bound=0)
  flags.DEFINE_integer("max_lr_decays", _TRAIN.max_lr_decays,
                       "Stop training after this many "
                       "halvings; 0: never stop for it.", lower_bound=0)
  flags.DEFINE_integer("valid_examples", _TRAIN.valid_examples,
                       "Validate every epoch on only "
                       "this many examples (default: the whole split).",
                       lower_bound=1)
  flags.DEFINE_integer("validate_every", _TRAIN.validate_every,
                       "Also validate every this many "
                       "steps inside epochs (0: at epoch ends and at the "
                       "final step only).", lower_bound=0)
  flags.DEFINE_enum("select", _TRAIN.select, ["last", "best"],
                    "Which checkpoint's "
                    "test metrics metrics.json reports at its top level: "
                    "last (the weights training ended with) or best (the "
                    "lowest validation negative ELBO). Both are always under test_last and "
                    "test_best.")
  flags.DEFINE_float("valid_from_train", _DATA.valid_from_train,
                     "Hold out this fraction of the "
                     "training split (seeded by --data_seed) as the "
                     "validation split, for corpora whose valid file is the "
                     "training data (the vocabulary is built from the part "
                     "left to train on); 0: use the valid split.",
                     lower_bound=0.0,
                     upper_bound=0.9)
  flags.DEFINE_string("iw_report", ",".join(map(str, _EVAL.iw_report)),
                      "Also report the test IW-NLL "
                      "at these sample counts (prefixes of the same draws), "
                      "to show its convergence; empty: none.")
  flags.register_validator("iw_report", lambda text: counts(text) is not None,
                           "give positive integers separated by commas, "
                           "e.g. 20,100")


def counts(text: str) -> tuple[int, ...] | None:
  """The positive integers of a comma-separated flag value ("20,100"), or
  None when it holds anything else."""
  try:
    values = tuple(int(p) for p in text.split(",") if p.strip())
  except ValueError:
    return None
  return values if all(v >= 1 for v in values) else None
