"""benchmarks/small_data.py's report: the table docs/small_data.md shows is the mean over seeds
of each run's last evaluation, with the spread, and the plot draws every run (no training here:
the grid itself is the benchmark's command)."""

import numpy as np
import pytest
from PIL import Image

from benchmarks import small_data


def _run(data, recipe, seed, gan_train, held, steps=(250, 500)):
  evals = [
      {
          "step": s,
          "gan_train": gan_train * s / steps[-1],
          "gan_test": 0.5,
          "fd": 2.0 + seed,
          "train_above_heldout": held,
      }
      for s in steps
  ]
  trace = [
      {"step": s, "real_above_fake": 0.8 + 0.1 * (s > 250), "ada_p": 0.25 * seed} for s in steps
  ]
  return {
      "data": data,
      "recipe": recipe,
      "seed": seed,
      "train_per_class": 30,
      "real_ceiling": 0.97,
      "evals": evals,
      "trace": trace,
  }


@pytest.fixture(scope="module")
def results():
  return {
      "runs": [
          _run("digits/30", "paper", 0, 0.8, 0.54),
          _run("digits/30", "paper", 1, 0.6, 0.52),
          _run("digits/30", "ada", 0, 0.4, 0.50),
      ]
  }


def test_the_table_is_the_mean_and_spread_over_seeds_of_the_last_evaluation(results):
  rows = {(r["data"], r["recipe"]): r for r in small_data.summary(results)}
  paper = rows[("digits/30", "paper")]
  assert paper["seeds"] == 2
  assert paper["gan_train"] == pytest.approx(0.7) and paper["gan_train_spread"] == pytest.approx(
      0.2
  )
  assert paper["fd"] == pytest.approx(2.5)
  assert paper["train_above_heldout"] == pytest.approx(0.53)
  assert paper["real_above_fake"] == pytest.approx(0.9)  # the second half of the trace
  assert rows[("digits/30", "ada")]["seeds"] == 1
  table = small_data.markdown(results)
  assert (
      "| digits/30 (30/class) | paper | 0.700 ± 0.100 | 0.970 | 0.500 | 2.5 | 0.900 | 0.530 |"
      in table
  )
  assert table.count("\n") == 4  # header, rule, two rows


def test_the_plot_draws_a_panel_per_data_set(results, tmp_path):
  path = str(tmp_path / "plot.png")
  small_data.plot(results, path)
  image = np.asarray(Image.open(path).convert("RGB"))
  assert image.shape[1] == 300  # one panel
  black = (image == 0).all(-1)  # the paper recipe's lines
  orange = (image == np.array(small_data.COLOURS["ada"])).all(-1)
  assert black.sum() > 100 and orange.sum() > 20
