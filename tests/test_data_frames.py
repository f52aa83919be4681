"""Resize methods: the authors' scikit-image call reproduced, each method's per-axis weights."""

import numpy as np
import pytest
from conftest import emulator_frames

from permakey.data.frames import RESIZE_METHODS, resize_frame, resize_weights


@pytest.fixture(scope="module")
def raw_frames():
    """Real SpaceInvaders frames (210, 160, 3): one-pixel bullets, digits, sprites (the
    actions fire and move, so that bullets are on the screen)."""
    return emulator_frames("SpaceInvaders", 1, 60, 15, lambda t: 1 + t % 3)


def test_authors_resize_is_scikit_images_resize_with_its_default_anti_aliasing(raw_frames):
    from skimage import transform  # the dev extra

    for frame in raw_frames:
        # The authors' preprocess.py: resize(frames / 255.0, (84, 84), order=0).
        theirs = transform.resize(frame / 255.0, (84, 84), order=0)
        np.testing.assert_array_equal(
            resize_frame(frame, 84, "authors"), np.rint(theirs * 255).astype(np.uint8)
        )
        # Not the plain nearest neighbour: the blur changes a good part of the pixels.
        plain = transform.resize(frame / 255.0, (84, 84), order=0, anti_aliasing=False)
        assert (np.abs(theirs - plain) > 2 / 255).mean() > 0.05


@pytest.mark.parametrize("method", RESIZE_METHODS)
def test_resize_weights_are_the_linear_map_of_each_method(raw_frames, method):
    rows, cols = resize_weights(method, 210, 84), resize_weights(method, 160, 84)
    assert rows.shape == (84, 210) and cols.shape == (84, 160)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    assert (rows >= 0).all() and not rows.flags.writeable
    for frame in raw_frames:
        linear = np.einsum("ih,hwc,jw->ijc", rows, frame.astype(np.float64), cols, optimize=True)
        # Pillow rounds between its two passes: at most one level apart.
        assert np.abs(np.rint(linear) - resize_frame(frame, 84, method)).max() <= 1
    if method == "nearest":
        assert set(np.unique(rows)) == {0.0, 1.0}  # one raw pixel per stored pixel
    with pytest.raises(ValueError, match="unknown resize method"):
        resize_weights("bicubic", 210, 84)
