"""The shared tolerance rule of the goldens (tests/golden_compare.py)."""
import numpy as np
import pytest
import torch

from golden_compare import assert_all_close_scaled, assert_close_scaled


def test_scaled_tolerance_follows_each_tensors_magnitude():
    big = np.array([30.0, -12.0, 0.0])
    assert_close_scaled(big + 2e-5, big, rtol=1e-6, atol_rel=1e-6)          # 2e-5 <= 1e-6*30 + 1e-6*|x|
    small = big * 1e-6
    with pytest.raises(AssertionError, match="outside"):
        assert_close_scaled(small + 2e-5, small, rtol=1e-6, atol_rel=1e-6)   # the same error is huge at this scale


def test_exact_zero_has_no_absolute_floor_unless_a_scale_is_named():
    with pytest.raises(AssertionError):
        assert_close_scaled(np.full(3, 1e-12), np.zeros(3), name="cancelled")
    assert_close_scaled(np.full(3, 1e-12), np.zeros(3), scale=1.0, name="cancelled")


def test_shape_dtype_torch_and_mappings():
    with pytest.raises(AssertionError, match="shape"):
        assert_close_scaled(np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(AssertionError, match="differ"):
        assert_close_scaled(np.array([1, 2]), np.array([1, 3]))
    assert_close_scaled(torch.tensor([1.0, 2.0], requires_grad=True), np.array([1.0, 2.0]))
    with pytest.raises(AssertionError, match="p/b"):
        assert_all_close_scaled({"a": [1.0], "b": [2.0]}, {"a": [1.0], "b": [2.5]}, prefix="p/")
    with pytest.raises(AssertionError, match="missing"):
        assert_all_close_scaled({"a": [1.0]}, {"a": [1.0], "b": [2.0]})
