"""Fuzzed input files: each ends in an InputError naming the file, or loads.

A fixed, seeded set (numpy default_rng(0)) of random bytes, empty and very
long lines, mixed encodings, truncated and bit-flipped files and archives and
wrong .amat widths goes through the loaders in-process, each under a time
limit (SIGALRM) so a hang fails; a few go through the runners (train.py,
encode.py) in subprocesses, which must exit with status 2 and one `error:`
line naming the file, without a traceback. `python tests/test_fuzz.py`
prints every case's outcome.
"""

import contextlib
import gzip
import io
import logging
import os
import signal
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data
from tf_cvae import errors
from tf_cvae.data import images
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import registry
from tf_cvae.trained import export

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)
WORDS = [f"w{i}" for i in range(30)]
GOOD = "".join(" ".join(RNG.choice(WORDS, RNG.integers(3, 10))) + "\n"
               for _ in range(200)).encode()
LINES = GOOD.split(b"\n")
AMAT = "".join(" ".join(map(str, RNG.integers(0, 2, 784))) + "\n"
               for _ in range(3)).encode()


def _png(size=105):
  return tf.io.encode_png(np.full((size, size, 1), 255, np.uint8)).numpy()


def _zip(members: dict) -> bytes:
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
    for name, content in members.items():
      archive.writestr(name, content)
  return out.getvalue()


ZIP = _zip({f"a/c{i}/{i}.png": _png() for i in range(3)})


def _central(content: bytes, offset: int, value: int) -> bytes:
  """ZIP with a 2-byte field of the first central directory entry set."""
  b = bytearray(content)
  at = b.find(b"PK\x01\x02") + offset
  b[at:at + 2] = value.to_bytes(2, "little")
  return bytes(b)


def _flip(content: bytes, count: int) -> bytes:
  b = bytearray(content)
  for at in RNG.integers(0, len(b), count):
    b[at] = RNG.integers(0, 256)
  return bytes(b)


def _idx(count=2, magic=0x803):
  return np.asarray([magic, count, 28, 28], ">u4").tobytes() + bytes(784 * 2)


def _no_nul(raw: bytes) -> bytes:
  return raw.replace(b"\0", b"\1")


# name -> (data set, file under the data folder, content, DataConfig fields,
# outcome): "error" (InputError naming the file), "skip" (loads, a warning
# names the file), "load", or "any" (error or load: a flip may miss).
T, A, Z = "text", "binarized_mnist/binarized_mnist_train.amat", "a.zip"
CASES = {
    "text: random bytes": (T, "t.txt", RNG.bytes(4096), {}, "error"),
    "text: random bytes, no NUL": (T, "t.txt", _no_nul(RNG.bytes(4096)), {},
                                   "error"),
    "text: empty file": (T, "t.txt", b"", {}, "error"),
    "text: only empty lines": (T, "t.txt", b"\n \n\t\n", {}, "error"),
    "text: some empty lines": (T, "t.txt", GOOD + b"\n  \n\n", {}, "load"),
    "text: 5000-word line": (T, "t.txt", b"\n".join(
        LINES[:57] + [b"w1 " * 5000] + LINES[57:]), {}, "error"),
    "text: 5000-word line, max_length": (T, "t.txt", GOOD + b"w1 " * 5000,
                                         {"max_length": 20}, "load"),
    "text: 1 MB token": (T, "t.txt", GOOD + b"x" * 2 ** 20 + b"\n", {},
                         "load"),
    "text: one Latin-1 line": (T, "t.txt", GOOD + "caf\xe9 w1\n".encode(
        "latin-1"), {}, "skip"),
    "text: Latin-1 file": (T, "t.txt", "".join(
        f"caf\xe9 {w}\n" for w in WORDS).encode("latin-1") + GOOD, {},
                           "error"),
    "text: UTF-16": (T, "t.txt", GOOD.decode().encode("utf-16"), {}, "error"),
    "text: cut inside a character": (T, "t.txt", GOOD + "na\xefve".encode()[
        :3], {}, "skip"),
    "text: CR line ends": (T, "t.txt", GOOD.replace(b"\n", b"\r"), {},
                           "error"),
    "text: BOM, CRLF": (T, "t.txt", b"\xef\xbb\xbf" + GOOD.replace(
        b"\n", b"\r\n"), {}, "load"),
    "text: zip archive": (T, "t.txt", ZIP, {}, "error"),
    "text: random vocab_file": (T, "v.txt", _no_nul(RNG.bytes(300)),
                                {"vocab_file": "v.txt"}, "error"),
    "amat: random bytes": ("binarized_mnist", A, RNG.bytes(3000), {}, "error"),
    "amat: truncated": ("binarized_mnist", A, AMAT[:int(RNG.integers(
        1600, 3000))], {}, "error"),
    "amat: 783 wide": ("binarized_mnist", A, AMAT.replace(b" 0\n", b"\n", 1),
                       {}, "error"),
    "amat: 785 wide": ("binarized_mnist", A, AMAT.replace(b"\n", b" 1\n", 1),
                       {}, "error"),
    "amat: blank line": ("binarized_mnist", A, AMAT[:1568] + b"\n" +
                         AMAT[1568:], {}, "error"),
    "amat: value 2": ("binarized_mnist", A, AMAT.replace(b"1", b"2", 1), {},
                      "error"),
    "amat: 10^5-value line": ("binarized_mnist", A, b"1 " * 10 ** 5, {},
                              "error"),
    "amat: empty": ("binarized_mnist", A, b"", {}, "error"),
    "amat: UTF-16": ("binarized_mnist", A, AMAT.decode().encode("utf-16"),
                     {}, "error"),
    "amat: CRLF, blank end": ("binarized_mnist", A, AMAT.replace(
        b"\n", b"\r\n") + b"\n\n", {}, "load"),
    "idx: random bytes": ("mnist", "mnist/train-images-idx3-ubyte",
                          RNG.bytes(2000), {}, "error"),
    "idx: truncated": ("mnist", "mnist/train-images-idx3-ubyte",
                       _idx()[:900], {}, "error"),
    "idx: count 2^32-1": ("mnist", "mnist/train-images-idx3-ubyte",
                          _idx(count=2 ** 32 - 1), {}, "error"),
    "idx.gz: truncated": ("mnist", "mnist/train-images-idx3-ubyte.gz",
                          gzip.compress(_idx())[:40], {}, "error"),
    "idx.gz: random bytes": ("mnist", "mnist/train-images-idx3-ubyte.gz",
                             b"\x1f\x8b" + RNG.bytes(500), {}, "error"),
    "zip: random bytes": ("omniglot", Z, RNG.bytes(3000), {}, "error"),
    "zip: encrypted member": ("omniglot", Z, _central(ZIP, 8, 1), {},
                              "error"),
    "zip: compression method 99": ("omniglot", Z, _central(ZIP, 10, 99), {},
                                   "error"),
    "zip: member not a PNG": ("omniglot", Z, _zip({"a/b/1.png": GOOD}), {},
                              "error"),
    "zip: 104x104 PNG": ("omniglot", Z, _zip({"a/b/1.png": _png(104)}), {},
                         "error"),
    "zip: truncated PNG": ("omniglot", Z, _zip({"a/b/1.png": _png()[:60]}),
                           {}, "error"),
    **{f"zip: cut at {n}": ("omniglot", Z, ZIP[:n], {}, "error")
       for n in sorted(RNG.integers(1, len(ZIP), 8))},
    **{f"zip: 3 bytes flipped #{i}": ("omniglot", Z, _flip(ZIP, 3), {}, "any")
       for i in range(30)},
}


@contextlib.contextmanager
def _time_limit(seconds: float):
  """Raises TimeoutError in the body after `seconds` (a hang fails)."""
  def expire(*unused):
    raise TimeoutError(f"still running after {seconds} s")
  previous = signal.signal(signal.SIGALRM, expire)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _write(path: str, content: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(content)
  return path


def _load(folder, name) -> tuple[str, str]:
  """Writes case `name` under `folder` and loads it: (outcome, message)."""
  dataset, relative, content, fields, _ = CASES[name]
  path = _write(os.path.join(folder, relative), content)
  try:
    with _time_limit(20):
      if dataset == "omniglot":
        images.read_omniglot_zip(path)
      elif dataset == "text":
        good = {s: _write(os.path.join(folder, f"{s}.txt"), GOOD)
                for s in ("train", "valid", "test")}
        if "vocab_file" in fields:
          fields = {**fields, "vocab_file": path}
        else:
          good["train"] = path
        data.load(data.DataConfig(
            name="text", train_file=good["train"], valid_file=good["valid"],
            test_file=good["test"], **fields))
      else:
        if dataset == "binarized_mnist":          # the other splits are good
          for split in ("valid", "test"):
            _write(os.path.join(folder, A.replace("train", split)), AMAT)
        data.load(data.DataConfig(name=dataset, data_dir=folder))
  except errors.InputError as error:
    assert path in str(error), str(error)
    return "error", str(error)
  return "load", ""


@pytest.mark.parametrize("name", list(CASES))
def test_fuzzed_file_is_an_error_or_a_logged_skip(name, tmp_path, caplog):
  with caplog.at_level(logging.INFO, logger="absl"):
    outcome, message = _load(str(tmp_path), name)
  expected = CASES[name][4]
  if expected == "any":
    return
  warned = [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "skipped" in r.getMessage()
            and str(tmp_path) in r.getMessage()]
  assert ("skip" if outcome == "load" and warned else outcome) == expected, (
      message, warned)
  if expected == "skip":
    assert "skipped 1 of" in warned[0]


def _exports(folder: str) -> dict:
  """Image and text exports of untrained encoders: kind -> export_dir."""
  vocab = vocab_lib.Vocabulary(WORDS)
  out = {}
  for kind, model, batch in (
      ("image", registry.ModelConfig(name="mlp", hidden_dim=8, latent_dim=2),
       {"image": tf.zeros((1, 28, 28, 1))}),
      ("text", registry.ModelConfig(embed_dim=8, hidden_dim=8, latent_dim=2),
       {"tokens": tf.constant([[vocab_lib.BOS_ID, vocab_lib.EOS_ID]])})):
    inputs = types.SimpleNamespace(kind=kind, vocab=vocab if kind == "text"
                                   else None)
    vae = registry.build_vae(model, inputs)
    vae.encode(batch)
    out[kind] = export.export_encoder(vae, os.path.join(folder, kind),
                                      inputs.vocab)
  return out


def _runner_cases(tmp) -> dict:
  """name -> (runner argv, what its error line must name: the path)."""
  write = lambda name, content: _write(os.path.join(tmp, name), content)
  good = write("good.txt", GOOD)
  for split in ("valid", "test"):
    write(A.replace("train", split), AMAT)
  exports = _exports(tmp)
  bad_export = os.path.dirname(write("bad/saved_model.pb", RNG.bytes(500)))
  text = lambda bad: (["train.py", "--dataset=text", f"--train_file={bad}",
                       f"--valid_file={good}", f"--test_file={good}",
                       f"--out_dir={bad}.run"], bad)
  encode = lambda kind, path, export_dir=None: (
      ["encode.py", f"--export_dir={export_dir or exports[kind]}",
       f"--input={path}", f"--output={path}.out.npy"], export_dir or path)
  return {
      "train: random bytes": text(write("random.txt", RNG.bytes(4096))),
      "train: fewer sentences than a batch": (text(write(
          "one.txt", b"w1 w2\n"))[0], "split 'train' holds 1 examples"),
      "train: truncated .amat": (
          ["train.py", "--dataset=binarized_mnist", f"--data_dir={tmp}",
           f"--out_dir={tmp}/amat.run"], write(A, AMAT[:2000])),
      "encode: random .npy": encode("image", write("r.npy", RNG.bytes(2000))),
      "encode: empty line": encode("text", write(
          "empty.txt", GOOD.replace(b"\n", b"\n\n", 1))),
      "encode: corrupt export": encode("text", good, bad_export),
  }


@pytest.mark.slow
def test_runners_report_bad_files_in_one_line(tmp_path):
  cases = _runner_cases(str(tmp_path))
  procs = {name: subprocess.Popen(
      [sys.executable, os.path.join(_REPO_ROOT, "runners", argv[0]),
       *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      cwd=_REPO_ROOT) for name, (argv, _) in cases.items()}
  try:
    for name, proc in procs.items():
      _, stderr = proc.communicate(timeout=240)     # a hang fails here
      errors_ = [l for l in stderr.splitlines() if l.startswith("error:")]
      assert proc.returncode == 2, (name, stderr[-2000:])
      assert "Traceback" not in stderr, (name, stderr[-2000:])
      assert len(errors_) == 1 and cases[name][1] in errors_[0], (name, errors_)
  finally:
    for proc in procs.values():
      proc.kill()


if __name__ == "__main__":
  import tempfile  # pylint: disable=g-import-not-at-top
  for case in CASES:
    with tempfile.TemporaryDirectory() as folder:
      try:
        result, text = _load(folder, case)
      except AssertionError as e:
        result, text = "BAD", str(e)
      print(f"| {case} | {result} | {text.replace(folder, '')[:110]} |")
