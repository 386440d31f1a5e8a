"""Data sets by name: `load(DataConfig(name=...))` returns a Text- or ImageDataset."""

import dataclasses
import functools
import os
from typing import Callable

from tf_cvae import errors
from tf_cvae.data import base
from tf_cvae.data import images
from tf_cvae.data import synthetic
from tf_cvae.data import text

TextDataset = base.TextDataset
ImageDataset = base.ImageDataset


def default_data_dir() -> str:
  """$TF_CVAE_DATA, else ../shared/data relative to the working directory."""
  return os.environ.get("TF_CVAE_DATA", os.path.join("..", "shared", "data"))


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which data set to load and how; every field has a flag of the same name."""
  name: str = "synthetic_text"
  data_dir: str | None = None          # None: default_data_dir()
  train_file: str | None = None        # --dataset=text only
  valid_file: str | None = None
  test_file: str | None = None
  max_vocab: int | None = None         # cap on vocabulary ids, specials included
  min_count: int = 1                   # rarer training words map to unknown
  max_length: int | None = None        # words per sentence (longer ones are
                                       # dropped); None: no cap
  vocab_file: str | None = None        # reuse a saved vocabulary (text files)
  seed: int = 0                        # synthetic data and fixed binarization
  valid_from_train: float = 0.0        # > 0: hold out this fraction of train
                                       # as the valid split (the valid file
                                       # is then not read as validation)
  download: bool = True                # tfds may download an image set
  held_out: float = 0.1                # own data given as one training
                                       # file or folder: the fraction held
                                       # out (seeded) for valid and for test
  binarize: str = "dynamic"            # images: dynamic | threshold
  threshold: float = 0.5               # binarize=threshold: pixel >= it is 1

  def resolved_data_dir(self) -> str:
    return self.data_dir or default_data_dir()


# DataConfig fields that name files or folders.
PATH_FIELDS = ("data_dir", "train_file", "valid_file", "test_file",
               "vocab_file")


def absolute_paths(config: DataConfig) -> DataConfig:
  """`config` with its folder and files as absolute paths, found as the
  loaders find them (a file relative to the working directory, else to
  data_dir), so the config reads the same files from any folder."""
  data_dir = config.data_dir and os.path.abspath(
      os.path.expanduser(config.data_dir))
  resolved = dataclasses.replace(config, data_dir=data_dir)

  def absolute(path, beside_data):
    if not path:
      return path
    path = os.path.expanduser(path)
    if beside_data and not os.path.exists(path):
      path = text.resolve(path, resolved.resolved_data_dir())
    return os.path.abspath(path)

  return dataclasses.replace(
      resolved, vocab_file=absolute(config.vocab_file, False),
      **{f"{split}_file": absolute(getattr(config, f"{split}_file"), True)
         for split in base.SPLITS})


@functools.lru_cache(maxsize=4)
def _synthetic_text(seed: int) -> base.TextDataset:
  return synthetic.synthetic_text(synthetic.SyntheticTextConfig(seed=seed))


@functools.lru_cache(maxsize=4)
def _synthetic_images(seed: int) -> base.ImageDataset:
  return synthetic.synthetic_images(synthetic.SyntheticImageConfig(seed=seed))


# One line per data set: name -> (kind, loader). Loaders take a DataConfig.
_REGISTRY: dict[str, tuple[str, Callable[[DataConfig], base.Dataset]]] = {
    "synthetic_text": ("text", lambda c: _synthetic_text(c.seed)),
    "synthetic_images": ("image", lambda c: _synthetic_images(c.seed)),
    "text": ("text", text.load_text),
    "images": ("image", images.load_own_images),
    "ptb": ("text", functools.partial(text.load_corpus, "ptb")),
    "yahoo": ("text", functools.partial(text.load_corpus, "yahoo")),
    "yelp": ("text", functools.partial(text.load_corpus, "yelp")),
    "binarized_mnist": ("image", images.load_binarized_mnist),
    "mnist": ("image", images.load_mnist),
    "omniglot": ("image", images.load_omniglot),
}


def hold_out(dataset: base.Dataset, fraction: float, seed: int) -> base.Dataset:
  """`dataset` whose valid split is a seeded `fraction` of its train split
  (those rows leave train); the original valid split is discarded.

  For a corpus that ships no split to validate on apart from the one it
  trains on (e.g. PTB's valid file used as training data): validation then
  never reads the test split nor the training rows.
  """
  if not 0.0 < fraction < 1.0:
    raise errors.InputError(f"the held-out fraction must lie in (0, 1), got "
                            f"{fraction}")
  rows = base.held_out_rows(dataset.num_examples("train"), fraction, seed,
                            ("valid",), dataset.name, "training rows")
  valid_rows, train_rows = rows["valid"], rows["train"]

  def pick(values, rows):
    if isinstance(values, list):
      return [values[i] for i in rows]
    return values[rows]

  splits = dict(dataset.splits, train=pick(dataset.splits["train"], train_rows),
                valid=pick(dataset.splits["train"], valid_rows))
  latents = dataset.latents and dict(
      dataset.latents, train=dataset.latents["train"][train_rows],
      valid=dataset.latents["train"][valid_rows])
  changes = dict(splits=splits, latents=latents)
  if getattr(dataset, "labels", None):      # {split: {name: [N]}}
    train_labels = dataset.labels["train"]
    changes["labels"] = dict(
        dataset.labels,
        train={k: v[train_rows] for k, v in train_labels.items()},
        valid={k: v[valid_rows] for k, v in train_labels.items()})
  if dataset.kind == "text" and dataset.vocab_options is not None:
    changes.update(_training_part_vocabulary(dataset, train_rows, valid_rows))
  if dataset.kind == "image":     # held-out images get one fixed draw
    train_mode = dataset.binarization["train"]
    changes["binarization"] = dict(dataset.binarization, valid=(
        "none" if train_mode == "none" else "fixed"))
  return dataclasses.replace(dataset, **changes)


def _training_part_vocabulary(dataset: base.TextDataset, train_rows,
                              valid_rows) -> dict:
  """vocab, splits and words of a text set whose train split keeps only
  train_rows: the vocabulary rebuilt from those sentences (same options), so
  words seen only in the held-out rows become unknown; every split
  re-encoded."""
  train = dataset.words["train"]
  words = dict(dataset.words, train=[train[i] for i in train_rows],
               valid=[train[i] for i in valid_rows])
  vocab = text.training_vocabulary(
      words["train"], dataset.vocab_options,
      f"{dataset.name} (the training part after holding out valid)")
  splits = {split: [vocab.encode(s) for s in sentences]
            for split, sentences in words.items()}
  return dict(vocab=vocab, splits=splits, words=words)


def names() -> list[str]:
  """Every data set name `load` accepts."""
  return sorted(_REGISTRY)


def kind(name: str) -> str:
  """"text" or "image" for a registered data set name."""
  if name not in _REGISTRY:
    raise errors.InputError(f"unknown data set {name!r}; known: {', '.join(names())}")
  return _REGISTRY[name][0]


def load(config: DataConfig) -> base.Dataset:
  """Loads the data set `config.name` (raises errors.InputError naming what is wrong)."""
  kind(config.name)
  dataset = _REGISTRY[config.name][1](config)
  if config.valid_from_train:
    dataset = hold_out(dataset, config.valid_from_train, config.seed)
  return dataset
