"""Models (seeded, exact parameter counts) and weights on the wire (fl_app.models, fl_app.tensors).

A model's initial bytes are a function of the seed alone; weights survive the protobuf round trip
bit for bit; and every way an update can fail to fit the model is refused with its reason code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fl_testlib import PROPERTY
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fl_app import model_sizes
from fl_app.model_sizes import MODELS
from fl_app.models import build_model, num_parameters
from fl_app.proto import fl_pb2
from fl_app.tensors import Layout, NDArrays, UpdateError, from_proto, state_to_arrays, to_proto


def model_bytes(name: str, seed: int) -> bytes:
    return b"".join(t.numpy().tobytes() for t in build_model(name, seed).state_dict().values())


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_initial_model_bytes(name: str) -> None:
    assert model_bytes(name, 7) == model_bytes(name, 7)
    assert model_bytes(name, 7) != model_bytes(name, 8)


def test_building_a_model_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_model("small", 5)
    np.testing.assert_array_equal(torch.rand(4).numpy(), expected.numpy())


def test_models_built_in_threads_at_once_are_those_of_their_seeds() -> None:
    # The harness builds initial models in threads (cells measured in parallel); without the
    # lock their draws from torch's global generator interleave and the weights are wrong.
    from concurrent.futures import ThreadPoolExecutor

    seeds = [s % 4 for s in range(32)]
    expected = {s: model_bytes("small", s) for s in set(seeds)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda s: model_bytes("small", s), seeds))
    assert [g == expected[s] for g, s in zip(got, seeds, strict=True)] == [True] * len(seeds)


@pytest.mark.parametrize(("name", "params"), [("small", 46_730), ("paper", 1_199_882)])
def test_parameter_counts(name: str, params: int) -> None:
    model = build_model(name)
    assert num_parameters(model) == params
    assert Layout.of(state_to_arrays(model.state_dict())).nbytes == 4 * params
    # the torch-free table the plugin checks round budgets with says the same
    assert model_sizes.PARAMETERS[name] == params
    assert model_sizes.model_bytes(name) == Layout.of(state_to_arrays(model.state_dict())).nbytes
    out = model(torch.zeros(2, 1, 28, 28))
    assert tuple(out.shape) == (2, 10)


def test_the_torch_free_table_lists_every_model() -> None:
    assert set(model_sizes.PARAMETERS) == set(MODELS)


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="model 'huge': expected one of small, paper"):
        build_model("huge")


# ---- tensors ------------------------------------------------------------------------------------

FINITE32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def weight_dicts(draw: st.DrawFn) -> NDArrays:
    shapes = draw(st.lists(hnp.array_shapes(min_dims=0, max_dims=4, max_side=5), max_size=5))
    return {
        f"t{i}": draw(hnp.arrays(np.float32, s, elements=FINITE32)) for i, s in enumerate(shapes)
    }


@PROPERTY
@given(weight_dicts())
def test_to_proto_from_proto_round_trip_is_bit_exact(arrays: NDArrays) -> None:
    msg = fl_pb2.Weights.FromString(to_proto(arrays).SerializeToString())
    back = from_proto(msg, Layout.of(arrays))
    assert list(back) == list(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == np.dtype("<f4") and back[k].shape == v.shape
        assert back[k].tobytes() == v.astype("<f4").tobytes()


def test_to_proto_sends_little_endian_float32_whatever_it_is_given() -> None:
    big_endian = np.arange(6, dtype=">f8").reshape(2, 3)
    msg = to_proto({"w": big_endian})
    (t,) = msg.tensors
    assert (t.name, t.dtype, list(t.shape)) == ("w", "float32", [2, 3])
    assert t.data == np.arange(6, dtype="<f4").tobytes()


def model_layout() -> tuple[NDArrays, Layout]:
    arrays = state_to_arrays(build_model("small").state_dict())
    return arrays, Layout.of(arrays)


def refused(msg: fl_pb2.Weights, layout: Layout) -> UpdateError:
    with pytest.raises(UpdateError) as info:
        from_proto(msg, layout)
    return info.value


def test_wrong_tensor_count_is_bad_shape() -> None:
    arrays, layout = model_layout()
    first = dict(list(arrays.items())[:-1])
    err = refused(to_proto(first), layout)
    assert err.reason == "bad_shape" and "tensors, model has" in str(err)


def test_wrong_shape_is_bad_shape() -> None:
    arrays, layout = model_layout()
    name = next(iter(arrays))
    arrays[name] = np.zeros((3, 3), np.float32)
    err = refused(to_proto(arrays), layout)
    assert err.reason == "bad_shape" and name in str(err)


def test_wrong_name_is_bad_shape() -> None:
    arrays, layout = model_layout()
    renamed = {("x" + k if i == 0 else k): v for i, (k, v) in enumerate(arrays.items())}
    assert refused(to_proto(renamed), layout).reason == "bad_shape"


def test_data_that_does_not_fit_the_shape_is_bad_shape() -> None:
    arrays, layout = model_layout()
    msg = to_proto(arrays)
    msg.tensors[0].data = msg.tensors[0].data[:-4]
    assert refused(msg, layout).reason == "bad_shape"
    # without a layout the same check still applies
    with pytest.raises(UpdateError, match="bad_shape"):
        from_proto(msg)


@pytest.mark.parametrize("dtype", ["float64", "float16", "int32", ""])
def test_other_dtypes_are_bad_dtype(dtype: str) -> None:
    arrays, layout = model_layout()
    msg = to_proto(arrays)
    msg.tensors[1].dtype = dtype
    err = refused(msg, layout)
    assert err.reason == "bad_dtype" and repr(dtype) in str(err)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    arrays, layout = model_layout()
    name = list(arrays)[2]
    arrays[name] = arrays[name].copy()
    arrays[name].flat[-1] = bad
    err = refused(to_proto(arrays), layout)
    assert err.reason == "non_finite" and name in str(err)


def test_scalar_and_non_contiguous_tensors_keep_shape_and_c_order() -> None:
    arrays = {
        "scalar": np.array(2.5, np.float32),
        "t": np.arange(6, dtype=np.float32).reshape(2, 3).T,
    }
    back = from_proto(to_proto(arrays), Layout.of(arrays))
    assert back["scalar"].shape == () and float(back["scalar"]) == 2.5
    np.testing.assert_array_equal(back["t"], arrays["t"])
