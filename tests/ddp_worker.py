"""One rank of the 2-process CPU DDP test (tests/test_ddp.py), started by torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR OVERRIDES...

It runs ``dastc.train.train`` as ``python -m dastc.train`` would, with one extra callback (``RankRecord``)
that saves what this rank saw and ended with into ``OUT_DIR/rank<r>.pt``."""

from __future__ import annotations

import sys

import lightning as L
import torch


class RankRecord(L.Callback):
    """Per step, the clips of this rank's batch; at the end of fitting, its student and teacher weights."""

    def __init__(self, path: str):
        self.path, self.steps = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        clips = [(m["sequence"], tuple(m["frame_ids"])) for m in batch["source"]["meta"]]
        targets = [(m["sequence"], tuple(m["frame_ids"])) for m in batch["target"]["meta"]]
        self.steps.append({"step": trainer.global_step, "source": clips, "target": targets})

    def on_train_end(self, trainer, pl_module):
        torch.save(
            {
                "rank": trainer.global_rank,
                "world_size": trainer.world_size,
                "steps": self.steps,
                "student": {k: v.clone() for k, v in pl_module.student.state_dict().items()},
                "teacher": {k: v.clone() for k, v in pl_module.teacher.state_dict().items()},
            },
            self.path.replace("RANK", str(trainer.global_rank)),
        )


if __name__ == "__main__":
    from dastc.config import compose_config
    from dastc.train import train

    out_dir, overrides = sys.argv[1], sys.argv[2:]
    overrides += [
        "+callbacks.rank_record._target_=ddp_worker.RankRecord",
        f"+callbacks.rank_record.path={out_dir}/rankRANK.pt",
    ]
    train(compose_config("train", overrides))


def aggregate_rank(rank: int, world: int, port: int, path: str) -> None:
    """torch.multiprocessing.spawn target: class aggregates and their gradients on this rank's half of a fixed
    batch, summed over ranks with all_ranks_sum (gloo), saved for the test to compare with one process."""
    import os

    import torch.distributed as dist

    from dastc.methods.alignment import all_ranks_sum, class_aggregates, intra_class_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = torch.load(path.replace("RANK", "input"))
        half = slice(rank * 2, rank * 2 + 2)
        features = data["features"][half].clone().requires_grad_(True)
        means, present = class_aggregates(
            features, data["labels"][half], data["weights"][half], 4, 5, 255, all_ranks_sum
        )
        other = data["other"]
        loss = intra_class_loss(means, other, present & other.abs().sum(1).gt(0))
        loss.backward()
        torch.save(
            {"means": means.detach(), "present": present, "loss": loss.detach(), "grad": features.grad},
            path.replace("RANK", str(rank)),
        )
    finally:
        dist.destroy_process_group()
