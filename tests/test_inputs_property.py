"""Property-based input checks (hypothesis): `TrainedModel.keypoints` and the Gymnasium
wrappers' `KeypointEncoder` fed arbitrary shapes, dtypes, value ranges (NaN and inf
included), memory layouts and empty batches.

Each input gets a correct result or a ValueError whose one-line message names what it got,
never an error from deep inside numpy, PIL or torch. The models are real (untrained, tiny)
PermaKey and Transporter models; the examples are derandomized, so every run tries the same
ones (`EXAMPLES` each, counted in RELIABILITY.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_PERMAKEY, TINY_TRANSPORTER
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from permakey.envs.observation import KeypointEncoder
from permakey.models.permakey import PermaKey
from permakey.models.transporter import Transporter
from permakey.runs import TrainedModel

SIZE = 32  # the tiny models' frames
EXAMPLES = 120
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = [
    np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64,
    np.bool_, np.complex64,
]  # fmt: skip
LAYOUTS = ["contiguous", "flipped", "strided", "fortran", "read-only", "torch", "torch strided"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this file runs on one thread (`conftest.one_thread`)."""


def _model(kind: str) -> TrainedModel:
    torch.manual_seed(0)
    model = PermaKey(TINY_PERMAKEY) if kind == "permakey" else Transporter(TINY_TRANSPORTER)
    return TrainedModel(model)


MODELS = {kind: _model(kind) for kind in ("permakey", "transporter")}


def _valid_shapes(channels_first: bool) -> st.SearchStrategy[tuple[int, ...]]:
    """(N, S, S, 3) or (N, 3, S, S), N from 0."""
    n = st.integers(0, 3)
    if channels_first:
        return st.tuples(n, st.just(3), st.just(SIZE), st.just(SIZE))
    return st.tuples(n, st.just(SIZE), st.just(SIZE), st.just(3))


def _shapes(channels_first: bool) -> st.SearchStrategy[tuple[int, ...]]:
    """Near-valid frame shapes (a side or the channels off), and arbitrary ones."""
    n = st.integers(0, 3)
    side = st.sampled_from([1, SIZE - 1, SIZE, SIZE + 1])
    channels = st.sampled_from([1, 3, 4])
    near = (
        st.tuples(n, channels, side, side) if channels_first else st.tuples(n, side, side, channels)
    )
    arbitrary = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)
    return st.one_of(_valid_shapes(channels_first), near, arbitrary)


def _values(draw, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``dtype`` and ``shape``: drawn element by element when small; else random
    from a drawn seed (a whole frame is more than hypothesis draws well) with a few drawn
    values set in it, NaN, inf and values outside [0, 255] among them for floats."""
    if int(np.prod(shape)) <= 64:
        return draw(hnp.arrays(dtype, shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    array = (
        rng.uniform(-50, 300, shape)
        if np.dtype(dtype).kind in "fc"
        else rng.integers(0, 256, shape)
    )
    array = array.astype(dtype)
    for value in draw(st.lists(hnp.from_dtype(np.dtype(dtype)), max_size=3)):
        array[tuple(rng.integers(0, side) for side in shape)] = value
    return array


@st.composite
def frames(draw, channels_first: bool | None = None, layouts=LAYOUTS):
    """(value, the same values as a plain C-contiguous numpy array); half of them valid."""
    first = draw(st.booleans()) if channels_first is None else channels_first
    if draw(st.booleans()):
        dtype, shape = np.uint8, draw(_valid_shapes(first))
    else:
        dtype, shape = draw(st.sampled_from(DTYPES)), draw(_shapes(first))
    array = _values(draw, dtype, shape)
    layout = draw(st.sampled_from(layouts))
    return _lay_out(array, layout), array


def _lay_out(array: np.ndarray, layout: str):
    """The same values as ``array`` in another memory layout (or as a torch tensor)."""
    if layout == "flipped" and array.ndim:  # negative strides: twice flipped, same values
        return np.flip(np.flip(array, axis=0).copy(), axis=0)
    if layout == "strided":  # every other element of a bigger array
        return np.repeat(array, 2, axis=-1)[..., ::2] if array.ndim else array
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "read-only":
        array = array.copy()
        array.flags.writeable = False
        return array
    if layout.startswith("torch"):
        try:
            tensor = torch.from_numpy(array.copy())
        except TypeError:  # a dtype torch has no tensor of: numpy it stays
            return array
        if layout == "torch strided" and array.ndim:
            tensor = tensor.repeat_interleave(2, dim=-1)[..., ::2]
        return tensor
    return array


def _valid_frames(array: np.ndarray) -> bool:
    shape = array.shape
    return array.dtype == np.uint8 and (
        shape[1:] == (SIZE, SIZE, 3) or (len(shape) == 4 and shape[1:] == (3, SIZE, SIZE))
    )


def _clear(err: ValueError) -> str:
    message = str(err)
    assert message and "\n" not in message
    return message


def _batch_sizes() -> st.SearchStrategy:
    """Mostly good ones (1 to 4, and None: the device's default), and bad ones."""
    bad = st.one_of(st.integers(-3, 0), st.sampled_from([True, 1.5, "2"]))
    return st.one_of(st.integers(1, 4), st.just(np.int64(2)), st.none(), bad)


@pytest.mark.parametrize("kind", ["permakey", "transporter"])
@PROPERTY
@given(data=frames(), batch_size=_batch_sizes())
def test_keypoints_of_any_input_are_right_or_a_clear_value_error(kind, data, batch_size):
    model = MODELS[kind]
    value, plain = data
    good_batch = batch_size is None or (
        isinstance(batch_size, (int, np.integer))
        and not isinstance(batch_size, bool)
        and batch_size >= 1
    )
    if not (good_batch and _valid_frames(plain)):
        event("refused with a ValueError")
        with pytest.raises(ValueError) as err:
            model.keypoints(value, batch_size=batch_size)
        message = _clear(err.value)
        assert ("batch_size" in message) if not good_batch else ("frames" in message)
        if good_batch and np.issubdtype(plain.dtype, np.floating):
            finite = np.isfinite(plain).all()
            assert ("NaN or inf" in message) == (not finite)
        return
    event("keypoints")
    found = model.keypoints(value, batch_size=batch_size)
    k = model.num_keypoints
    assert found.centres.shape == (len(plain), k, 2) and found.centres.dtype == torch.float32
    assert torch.isfinite(found.centres).all() and (found.centres.abs() <= 1 + 1e-5).all()
    # Any layout and batch size gives the keypoints of the plain array in one batch.
    reference = model.keypoints(np.ascontiguousarray(plain), batch_size=256)
    torch.testing.assert_close(found.centres, reference.centres, atol=1e-5, rtol=0)


ENCODERS = {
    kind: KeypointEncoder(MODELS[kind], features=features)
    for kind in ("permakey", "transporter")
    for features in (False,)
}
ENCODERS_WITH_FEATURES = {kind: KeypointEncoder(MODELS[kind], features=True) for kind in MODELS}


@st.composite
def raw_frames(draw):
    """Frames as an environment could send them: any height and width, and worse; about half
    of them valid (uint8, N x H x W x 3)."""
    n, side = st.integers(0, 3), st.integers(0, 40)
    rgb = st.tuples(n, side, side, st.just(3))
    if draw(st.booleans()):
        dtype, shape = np.uint8, draw(rgb)
    else:
        dtype = draw(st.sampled_from(DTYPES))
        other = st.tuples(n, side, side, st.sampled_from([1, 4]))
        arbitrary = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)
        shape = draw(st.one_of(rgb, other, arbitrary))
    array = _values(draw, dtype, shape)
    layout = draw(st.sampled_from(["contiguous", "flipped", "strided", "fortran", "read-only"]))
    return _lay_out(array, layout), array


@pytest.mark.parametrize("kind", ["permakey", "transporter"])
@pytest.mark.parametrize("features", [False, True])
@PROPERTY
@given(data=raw_frames())
def test_the_wrappers_encoder_takes_any_input_or_says_why_not(kind, features, data):
    encoder = (ENCODERS_WITH_FEATURES if features else ENCODERS)[kind]
    value, plain = data
    valid = (
        plain.dtype == np.uint8 and plain.ndim == 4 and plain.shape[3] == 3
        and plain.shape[1] > 0 and plain.shape[2] > 0
    )  # fmt: skip
    if not valid:
        event("refused with a ValueError")
        with pytest.raises(ValueError) as err:
            encoder(value)
        assert "frames" in _clear(err.value)
        return
    event("observations")
    observations = encoder(value)
    assert observations.shape == (len(plain), encoder.size)
    assert observations.dtype == np.float32
    assert all(row in encoder.space for row in observations)
    np.testing.assert_array_equal(observations, encoder(np.ascontiguousarray(plain)))


def test_listed_bad_inputs(tmp_path):
    """The cases issue 20 lists, spelled out (the property tests draw them too)."""
    model = MODELS["permakey"]
    frames = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="batch_size"):
            model.keypoints(frames, batch_size=bad)
    reference = model.keypoints(frames).centres
    flipped = frames[::-1]  # negative strides
    torch.testing.assert_close(model.keypoints(flipped).centres, reference.flip(0))
    every_other = np.repeat(frames, 2, axis=0)[::2]  # not contiguous
    torch.testing.assert_close(model.keypoints(every_other).centres, reference)
    floats = frames.astype(np.float32) / 255
    floats[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="uint8.*NaN or inf"):
        model.keypoints(floats)
    with pytest.raises(ValueError, match=r"frames\[None\]"):
        model.keypoints(frames[0])
    empty = model.keypoints(frames[:0])
    assert empty.centres.shape == (0, model.num_keypoints, 2)
    encoder = ENCODERS["permakey"]
    assert encoder(np.zeros((0, 210, 160, 3), np.uint8)).shape == (0, encoder.size)
    with pytest.raises(ValueError, match="RGB frames"):
        encoder(np.zeros((2, 210, 160), np.uint8))
