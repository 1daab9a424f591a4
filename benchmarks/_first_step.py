"""The floor of a training job's start: a plain process that imports torch, reads the Parquet
file, and runs one training step of the benchmark's MLP (``train_bench.py`` runs it directly and
as a bare Ray Job). Prints ``first_step_at=<unix seconds>`` once that step is done.

    python benchmarks/_first_step.py DATA.parquet --batch-size 256 --hidden 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow.parquet as pq
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = pq.read_table(args.path)
    features = [n for n in table.column_names if n != "label"]
    x = torch.as_tensor(np.stack([table.column(f).to_numpy() for f in features], 1))
    y = torch.as_tensor(table.column("label").to_numpy())
    net = torch.nn.Sequential(torch.nn.Linear(len(features), args.hidden), torch.nn.ReLU(),
                              torch.nn.Linear(args.hidden, int(y.max()) + 1))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    idx = torch.randperm(len(y))[: args.batch_size]
    loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
    loss.backward()
    opt.step()
    print(f"first_step_at={time.time():.4f}", flush=True)


if __name__ == "__main__":
    main()
