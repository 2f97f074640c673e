"""Rendering without a display: mp4 / gif / png strip from an env or a run."""

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from robotrl.config import ConfigError
from robotrl.render import render, write_frames


def test_env_to_mp4_gif_and_strip(tmp_path):
    mp4 = render("pendulum", tmp_path / "p.mp4", steps=20)
    assert mp4["frames"] == 21
    reader = imageio.get_reader(tmp_path / "p.mp4")
    frames = [f for f in reader]
    assert len(frames) == 21 and frames[0].shape == (256, 256, 3)
    render("pendulum", tmp_path / "p.gif", steps=10)
    assert Image.open(tmp_path / "p.gif").n_frames == 11
    render("pendulum", tmp_path / "p.png", steps=10)
    assert Image.open(tmp_path / "p.png").size == (256 * 8, 256)


def test_frames_show_the_pendulum_moving(tmp_path):
    render("pendulum", tmp_path / "p.png", steps=30)
    strip = np.asarray(Image.open(tmp_path / "p.png"))
    tiles = np.split(strip, 8, axis=1)
    assert not np.array_equal(tiles[0], tiles[-1])


def test_bad_render_requests_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="neither a run directory nor a registered env"):
        render("no-such-env", tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match=r"\.mp4"):
        write_frames([np.zeros((8, 8, 3), np.uint8)], tmp_path / "x.avi", fps=10)
