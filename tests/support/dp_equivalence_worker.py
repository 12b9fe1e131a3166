"""Trains a small net without batch norm for a few steps on fixed samples; saves parameters.

Run standalone it uses all 32 samples per step; run as rank r of 2 (msrun or dynamic-cluster
env) it uses samples [16r, 16r+16). With averaged gradients both must end with the same
parameters. Uses the project's own optimizer and train-step builders (wrn.steps).
Usage: python dp_equivalence_worker.py OUT.npz
"""

import sys

from wrn.dist import prepare_process_env, setup_mindspore, world_from_env

info = world_from_env()
if info.role == "scheduler":
    from wrn.scheduler import run_scheduler

    sys.exit(run_scheduler())
prepare_process_env()

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402
from mindspore import nn, ops  # noqa: E402

from wrn.config import TrainConfig  # noqa: E402
from wrn.steps import make_loss, make_optimizer, make_train_step, param_checksum  # noqa: E402

info = setup_mindspore("CPU", "graph", 7, info)


class SmallNet(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, pad_mode="same", has_bias=True)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, pad_mode="same", has_bias=True)
        self.fc = nn.Dense(16, 5)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.fc(ops.mean(x, (2, 3)))


net = SmallNet()
rng = np.random.default_rng(0)
images = rng.standard_normal((4, 32, 3, 12, 12)).astype(np.float32)
labels = rng.integers(0, 5, (4, 32)).astype(np.int32)
cfg = TrainConfig(weight_decay=1e-3, momentum=0.9, nesterov=True)
step = make_train_step(net, make_loss(0.1), make_optimizer(net, cfg, 0.05))
per_rank = 32 // info.world_size
lo = info.rank * per_rank
for i in range(4):
    loss = step(ms.Tensor(images[i, lo:lo + per_rank]), ms.Tensor(labels[i, lo:lo + per_rank]))
if info.rank == 0:
    np.savez(sys.argv[1], **{p.name: p.asnumpy() for p in net.trainable_params()})
print(f"rank {info.rank}/{info.world_size} checksum {param_checksum(net)} loss {float(loss.asnumpy()):.6f}",
      flush=True)
