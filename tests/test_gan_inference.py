"""The lung-CT GAN's fast inference path computes the network's own function."""

from __future__ import annotations

import pytest
import torch

from generators.chest.lung_ct.networks import (
    N_CLASSES,
    LungCTGenerator,
    SliceRenderer,
    interleave_phases,
    label_classes,
    polyphase_weight,
)


def test_a_convolution_after_nearest_upsampling_is_a_polyphase_convolution_before_it():
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(2, 5, 6, 7, generator=generator)
    weight = torch.randn(4, 5, 3, 3, generator=generator)
    direct = torch.nn.functional.conv2d(torch.nn.functional.interpolate(y, scale_factor=2.0, mode="nearest"), weight, padding=1)
    for layout in (torch.contiguous_format, torch.channels_last):
        phases = torch.nn.functional.conv2d(y.contiguous(memory_format=layout), polyphase_weight(weight), padding=1)
        polyphase = torch.cat([interleave_phases(phases[i : i + 1].contiguous(memory_format=layout)) for i in range(2)])
        assert polyphase.shape == direct.shape
        assert torch.allclose(direct, polyphase, atol=1e-5)


@pytest.mark.parametrize("noise", [True, False])
def test_the_slice_renderer_equals_the_network_forward_pass(noise):
    torch.manual_seed(1)
    net = LungCTGenerator().eval()
    with torch.no_grad():  # give every layer non-trivial weights (the output layer starts at zero)
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    height, width, n = 32, 40, 3
    labels = torch.randint(0, N_CLASSES + 3, (n, 3, height, width))
    labels[0, 1, :4] = 105  # a lesion code
    spacing = torch.tensor([0.8, 2.5])
    y_mm = (torch.arange(height, dtype=torch.float32) - height / 2) * 0.8
    z = torch.randn(n, 32)
    maps = [torch.randn(n, 1, h, w) for h, w in net.noise_shapes(height, width)] if noise else None
    with torch.no_grad():
        w = net.mapping(z)
        expected = net(labels, spacing.expand(n, 2), y_mm.expand(n, height), w, maps)
        renderer = SliceRenderer(net, height, width, spacing, y_mm)
        styles = renderer.styles(w)
        classes = label_classes(labels)
        codes = SliceRenderer.codes(classes)
        base = net.class_hu[classes[:, 1]][:, None]
        for k in range(n):
            slice_maps = [m[k : k + 1] for m in maps] if maps is not None else None
            got = renderer(codes[k : k + 1], base[k : k + 1], styles, k, slice_maps)
            assert torch.allclose(got, expected[k : k + 1], atol=2e-2), float((got - expected[k : k + 1]).abs().max())
