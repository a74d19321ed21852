"""Helpers shared by the agents' tests."""

import pytest
import torch

# Buffers and agents run on either device; the CUDA case needs a GPU and is marked `gpu`.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]
