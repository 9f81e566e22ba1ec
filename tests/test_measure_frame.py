"""docs/measure_frame.py's numbers on images built to have (or lack) a frame."""

import importlib.util
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).parent.parent / "docs" / "measure_frame.py"
_SPEC = importlib.util.spec_from_file_location("measure_frame", _PATH)
measure_frame = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(measure_frame)


def _square_line(size: int, depth: int, colour) -> np.ndarray:
  """A grey image (1, size, size, 3) with a one-pixel square line `depth` pixels in."""
  image = np.full((1, size, size, 3), 0.5)
  d = measure_frame.border_distance(size)
  image[0, d == depth] = colour
  return image


def test_border_distance_counts_from_the_nearest_edge():
  d = measure_frame.border_distance(6)
  assert d[0].tolist() == [0, 0, 0, 0, 0, 0] and d[2].tolist() == [0, 1, 2, 2, 1, 0]


def test_ring_stats_of_a_dark_ring_around_a_bright_interior():
  image = np.ones((2, 8, 8, 3))
  image[:, measure_frame.border_distance(8) < 2] = (0.2, 0.4, 0.0)
  stats = measure_frame.ring_stats(image, ring=2)
  np.testing.assert_allclose(stats["ring_rgb"], (0.2, 0.4, 0.0))
  np.testing.assert_allclose(stats["interior_rgb"], (1.0, 1.0, 1.0))
  assert stats["ring_luma"] == pytest.approx(0.299 * 0.2 + 0.587 * 0.4)
  assert stats["frame"] == pytest.approx(stats["ring_luma"] - 1.0)
  assert measure_frame.luma_profile(image)[:3].tolist() == pytest.approx(
      [stats["ring_luma"], stats["ring_luma"], 1.0]
  )


def test_a_square_line_scores_and_detail_inside_does_not():
  rng = np.random.default_rng(0)
  frame = _square_line(32, 2, (0.2, 0.1, 0.3))
  noise = np.clip(0.5 + 0.1 * rng.standard_normal((1, 32, 32, 3)), 0, 1)
  lines = measure_frame.border_lines(frame)
  # The line at d=2: |0.5 − 2·c + 0.5| at d=2 and |c − 0.5| at d=1 and 3, over the channels.
  assert lines[1] == pytest.approx(2 * np.mean(np.abs(0.5 - np.array([0.2, 0.1, 0.3]))))
  np.testing.assert_allclose(lines[[0, 2]], np.mean(np.abs(0.5 - np.array([0.2, 0.1, 0.3]))))
  assert lines[3:].tolist() == [0.0] * 3
  assert measure_frame.frame_score(np.full((1, 32, 32, 3), 0.5)) == 0.0
  assert measure_frame.frame_score(frame) > 10 * measure_frame.frame_score(noise)


@pytest.mark.parametrize("shape, ring", [((8, 8, 3), 2), ((1, 8, 8, 3), 4), ((1, 8, 6, 3), 2)])
def test_ring_stats_refuses_what_it_cannot_measure(shape, ring):
  with pytest.raises(ValueError):
    measure_frame.ring_stats(np.zeros(shape), ring)
