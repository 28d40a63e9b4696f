"""Fine-tune the CBAM example (tests/examples/swin_cbam.py) on scikit-learn digits; writes
tests/fixtures/digits_cbam.pth.

The Swin part starts from tests/fixtures/digits_swin.pth (scripts/train_digits.py), the added
attention blocks from scratch: a few deterministic epochs, seconds on a laptop CPU.

python scripts/train_digits_cbam.py [--epochs 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from swin_edge.digits import load_digits_split
from swin_edge.model import load_model
from swin_edge.model.checkpoint import read_state_dict

EXAMPLE = "tests/examples/swin_cbam.py:digits_cbam"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--init", default="tests/fixtures/digits_swin.pth")
    ap.add_argument("--out", default="tests/fixtures/digits_cbam.pth")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic, and fast on a busy machine (no thread contention)
    xtr, ytr, xte, yte = load_digits_split()
    model = load_model(EXAMPLE).module  # the nn.Module the factory returns
    missing, unexpected = model.load_state_dict(read_state_dict(args.init), strict=False)
    assert not unexpected and all(k.startswith("cbam.") for k in missing), (missing, unexpected)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    steps = args.epochs * ((len(xtr) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            shift = torch.randint(-2, 3, (2,))  # light translation augmentation
            x = torch.roll(xt[idx], shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
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
