"""runners/compare.py as a user calls it: its table and the files behind it."""

import json
import math

import pytest

TINY = ["--embed_dim=16", "--hidden_dim=16", "--latent_dim=4",
        "--decoder_dropout=0", "--iw_samples=4", "--iw_chunk_size=4",
        "--eval_examples=64", "--log_every=100"]
# One data set keeps it fast (the MLP VAE); the table's layout is per data set.
DATASETS = ("synthetic_images",)
METHODS = ("vae", "self")
STEPS = 25     # the step time is measured from the 21st step on


def _tables(text: str) -> dict:
  """{dataset: (columns, {method: cells})} of compare.py's printed tables."""
  lines, tables = text.splitlines(), {}
  for i, line in enumerate(lines):
    if line.split(" (")[0] in DATASETS:
      assert line == f"{line.split(' (')[0]} ({STEPS} steps; nats)"
      assert lines[i + 1] == "```"
      columns = lines[i + 2].split()
      assert columns[0] == "run"
      rows = {}
      for row in lines[i + 3:]:
        if row == "```":
          break
        name, *cells = row.split()
        assert len(cells) == len(columns) - 1, row
        rows[name] = cells
      tables[line.split(" (")[0]] = (columns[1:], rows)
  return tables


@pytest.fixture(scope="module")
def compared(tmp_path_factory, run_runner):
  out = tmp_path_factory.mktemp("compare")
  result = run_runner("compare.py", f"--datasets={','.join(DATASETS)}",
                      f"--methods={','.join(METHODS)}", f"--max_steps={STEPS}",
                      f"--out={out}", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  print(result.stdout)
  return out, result.stdout


def test_compare_prints_a_row_of_finite_numbers_per_method(compared):
  _, stdout = compared
  tables = _tables(stdout)
  assert set(tables) == set(DATASETS)
  for dataset, (columns, rows) in tables.items():
    assert list(rows) == list(METHODS), dataset
    assert columns == ["nll", "kl", "mi", "au", "infonce_bound",
                       "train_seconds", "seconds_per_step", "step_time_vs_vae"]
    for method, cells in rows.items():
      values = dict(zip(columns, map(float, cells)))   # no "-": all measured
      assert all(math.isfinite(v) for v in values.values()), (dataset, method)
      assert values["nll"] > 0 and values["kl"] >= 0
      assert -0.5 <= values["mi"] <= math.log(32) + 1e-3
      assert values["infonce_bound"] <= math.log(32) + 1e-3
      assert 0 <= values["au"] <= 4
      assert values["seconds_per_step"] > 0
    # Step times are relative to the plain VAE's on the same data.
    assert float(rows["vae"][columns.index("step_time_vs_vae")]) == 1.0
    # The rows are the methods' own runs: the self critic's keeps more MI
    # (seeded: 2.9 nats against the plain VAE's 0.14 after 25 steps).
    mi = {m: float(cells[columns.index("mi")]) for m, cells in rows.items()}
    assert mi["self"] >= mi["vae"] + 1.0


def test_compare_files_hold_the_printed_values(compared):
  out, stdout = compared
  with open(out / "compare.md") as f:
    assert f.read().strip() == stdout.strip()
  for dataset, (columns, rows) in _tables(stdout).items():
    with open(out / dataset / "results.json") as f:
      results = json.load(f)
    assert list(results) == list(METHODS)
    for method, cells in rows.items():
      # Each row is the method's own run, under --out/<dataset>/<method>.
      with open(out / dataset / method / "metrics.json") as f:
        metrics = json.load(f)
      assert metrics["steps"] == STEPS
      for column, cell in zip(columns, cells):
        value = results[method][column]
        digits = 0 if column == "au" else 4 if column == (
            "seconds_per_step") else 3
        assert float(cell) == pytest.approx(value, abs=0.51 * 10**-digits), (
            dataset, method, column)
        if column in metrics:
          assert metrics[column] == value, (dataset, method, column)
      assert results[method]["step_time_vs_vae"] == pytest.approx(
          results[method]["seconds_per_step"]
          / results["vae"]["seconds_per_step"])
