#!/usr/bin/env python3
"""Optional PyTorch reference for the shared training workload of issue 3 (nothing depends on it).

Same workload as `cargo run --release -p tinyvae-host-tools --bin train_bench`:
a 96-64-8 / 8-64-96 VAE (ReLU, unit-variance Gaussian decoder), 20,000 windows, batch 64
(shuffled each epoch, last batch of 32 kept), Adam lr 1e-3, no KL warm-up, one thread, 20 epochs.
Loss per window: -log N(x; mean, I) + KL(N(mu, exp(lv)) || N(0, I)), encoder logvar clamped to
[-10, 10], one reparameterized sample; the batch mean is minimized. The reported loss is the mean of
the per-step batch losses weighted by batch size, as in train_bench.

Usage (PyTorch is a multi-GB install; it is not needed anywhere else):
    cargo run --release -p tinyvae-host-tools --bin train_bench -- --dump /tmp/windows.f32
    python3 host-tools/bench/train_pytorch.py /tmp/windows.f32 [--epochs 20]

The data file is raw little-endian float32, 20000 x 96, already standardized.
"""
import argparse
import math
import time

import torch
from torch import nn


class Vae(nn.Module):
    def __init__(self, x=96, h=64, z=8):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(x, h), nn.ReLU())
        self.mu = nn.Linear(h, z)
        self.logvar = nn.Linear(h, z)
        self.decoder = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, x))

    def loss(self, x):
        h = self.encoder(x)
        mu, lv = self.mu(h), self.logvar(h).clamp(-10.0, 10.0)
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        mean = self.decoder(z)
        recon = 0.5 * (math.log(2 * math.pi) + (x - mean) ** 2).sum(dim=1)
        kl = 0.5 * (lv.exp() + mu**2 - 1.0 - lv).sum(dim=1)
        return (recon + kl).mean(), recon.mean(), kl.mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="raw little-endian float32 windows (n x 96)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    with open(args.data, "rb") as f:
        raw = bytearray(f.read())
    data = torch.frombuffer(raw, dtype=torch.float32).reshape(-1, 96).clone()
    n = data.shape[0]
    model = Vae()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    times, losses = [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, args.batch):
            xb = data[perm[i : i + args.batch]]
            loss, _, _ = model.loss(xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        times.append(time.perf_counter() - t0)
        losses.append(total / n)
    times_sorted = sorted(times)
    print(f"PyTorch {torch.__version__}, 1 thread: VAE 96-64-8 / 8-64-96, {n} windows, batch {args.batch}, {args.epochs} epochs")
    print(f"  seconds per epoch: median {times_sorted[len(times) // 2]:.4f}, mean {sum(times) / len(times):.4f}, min {times_sorted[0]:.4f}")
    print(f"  final epoch loss (mean -ELBO per window): {losses[-1]:.4f}")
    print(f"  loss per epoch: {[round(v, 2) for v in losses]}")


if __name__ == "__main__":
    main()
