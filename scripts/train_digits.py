"""Train the small Swin on scikit-learn digits; writes tests/fixtures/digits_swin.pth.

python scripts/train_digits.py [--epochs 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from swin_edge.digits import DIGITS_CONFIG, load_digits_split
from swin_edge.model import SwinTransformer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--out", default="tests/fixtures/digits_swin.pth")
    args = ap.parse_args()
    torch.manual_seed(0)
    xtr, ytr, xte, yte = load_digits_split()
    model = SwinTransformer(DIGITS_CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = args.epochs * ((len(xtr) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            x = xt[idx]
            shift = torch.randint(-2, 3, (2,))  # light translation augmentation
            x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(x), yt[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} test top-1 {acc:.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
        args.out,
    )
    print("wrote", args.out, "test top-1", float(np.round(acc, 4)))


if __name__ == "__main__":
    main()
