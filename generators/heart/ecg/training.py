"""Fine-tuning the DeepFake ECG generator on the user's own 10-second ECGs (``synthpacs train heart/ecg --data DIR``).

The wheel ships the generator only, so a fresh discriminator (a strided
1-D convolution stack) learns beside it, with the Wasserstein loss and a
gradient penalty (WGAN-GP, as Pulse2Pulse was trained). The generator
starts from the shipped weights (or ``--init``) and is kept close to them
by a small learning rate. ``OUT/g_stat.pt`` holds the result in the
checkpoint's own layout, so ``--weights OUT`` serves it; the run record
(training_options.json, stats.jsonl) describes the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthpacs.errors import ConfigError
from synthpacs.generation.devices import resolve_device
from synthpacs.generation.train import RunRecord, TrainingRequest, machine

from .network import MICROVOLTS, NETWORK_LEADS, SAMPLES, load_network
from .records import read_folder

DEFAULTS = {"lr_g": 2e-5, "lr_d": 1e-4, "gp": 10.0, "d_steps": 2, "width": 32}
CHECKPOINT = "g_stat.pt"


def _discriminator(width: int):
    from torch import nn

    layers: list = []
    channels = len(NETWORK_LEADS)
    for out in (width, 2 * width, 4 * width, 8 * width, 8 * width):
        layers += [nn.Conv1d(channels, out, 25, stride=4, padding=12), nn.LeakyReLU(0.2)]
        channels = out
    layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, 1)]
    return nn.Sequential(*layers)


def train(request: TrainingRequest) -> Path:
    """Run the fine-tuning; returns the run folder (a pretrained folder)."""
    import torch

    if request.data is None:
        raise ConfigError("heart/ecg trains on the user's own ECGs: give --data DIR (DICOM waveforms, .asc or .csv, 10 s each)")
    options = {**DEFAULTS, **request.extra}
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown heart/ecg training option(s) {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    real, files = read_folder(request.data)
    device = resolve_device(request.device, "the device setting" if request.device_source == "default" else request.device_source)
    torch.manual_seed(request.seed)
    rng = np.random.default_rng(request.seed)
    if request.threads:
        torch.set_num_threads(request.threads)
    init = request.init / CHECKPOINT if request.init is not None and request.init.is_dir() else request.init
    generator = load_network(init, device).train()
    critic = _discriminator(int(options["width"])).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=float(options["lr_g"]), betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=float(options["lr_d"]), betas=(0.5, 0.9))
    data = torch.from_numpy(np.clip(real / MICROVOLTS, -1, 1)).to(device)
    record = RunRecord(request.out)
    record.options(
        {"request": request.as_json(), "hyperparameters": options, "files": [str(f) for f in files], "machine": machine()}
    )

    def noise(n: int):
        return torch.from_numpy(rng.uniform(-1, 1, size=(n, len(NETWORK_LEADS), SAMPLES)).astype(np.float32)).to(device)

    batch = min(request.batch, len(data))
    from tqdm import tqdm

    for step in tqdm(range(request.steps), disable=not request.progress, desc="heart/ecg fine-tune"):
        for _ in range(int(options["d_steps"])):
            pick = torch.from_numpy(rng.choice(len(data), size=batch, replace=len(data) < batch)).to(device)
            x_real = data[pick]
            with torch.no_grad():
                x_fake = generator(noise(batch))
            mix = torch.rand(batch, 1, 1, device=device)
            between = (mix * x_real + (1 - mix) * x_fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
            penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss_d = critic(x_fake).mean() - critic(x_real).mean() + float(options["gp"]) * penalty
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        loss_g = -critic(generator(noise(batch))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step % request.log_every == 0 or step == request.steps - 1:
            record.stats({"step": step, "loss_d": float(loss_d), "loss_g": float(loss_g), "gradient_penalty": float(penalty)})
        if request.minutes is not None and record.wall_s > 60 * request.minutes:
            break
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    torch.save({"stat_dict": state}, request.out / CHECKPOINT)
    return request.out
