"""DistributedDataParallel with 2 CPU processes (gloo): ranks agree and match single-process training."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from seqvision.train import distributed as dist_utils

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out_dir: str, batch_size: int, n: int = 32):
    from test_train import FeatureSeqs, TinyGRUClassifier, collate, make_cfg

    from seqvision.train import Trainer

    cfg = make_cfg(__import__("pathlib").Path(out_dir), epochs=3, batch_size=batch_size, lr=0.02)
    torch.manual_seed(0)
    trainer = Trainer(cfg, model=TinyGRUClassifier(), train_data=FeatureSeqs(n, seed=1),
                      val_data=FeatureSeqs(12, seed=2), label_names=list("abc"), collate_fn=collate)
    result = trainer.fit()
    return trainer, result


def _worker(rank: int, world: int, port: int, out_dir: str, result_dir: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        info = dist_utils.init_from_env(device="cpu")
        assert info.world_size == world and info.rank == rank and info.backend == "gloo"
        total = dist_utils.all_reduce_sum(torch.tensor([rank + 1.0]))
        trainer, result = _run(out_dir, batch_size=4)
        torch.save({"state": trainer.model.state_dict(), "history": result.history, "sum": total,
                    "is_main": dist_utils.is_main()}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist_utils.cleanup()


def test_ddp_two_gloo_processes_match_single_process(tmp_path):
    torch.set_num_threads(1)
    single_trainer, single = _run(str(tmp_path / "single"), batch_size=8)
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert float(r0["sum"][0]) == 3.0 and r0["is_main"] and not r1["is_main"]
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), f"ranks disagree on {k}"
        assert torch.allclose(v, single_trainer.model.state_dict()[k], atol=1e-5), f"DDP != single on {k}"
    # metrics are reduced over ranks: same as single-process on the whole val set
    def strip(h):
        return [{k: v for k, v in row.items() if k != "time_s"} for row in h]

    assert strip(r0["history"]) == strip(r1["history"])
    for a, b in zip(r0["history"], single.history):
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
    # only rank 0 wrote the run directory; its checkpoint holds the final weights
    from seqvision.train import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "ddp" / "run" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2
    for k, v in ckpt["model_state"].items():
        assert torch.equal(v, r0["state"][k])


def test_single_process_helpers_without_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = dist_utils.init_from_env(device="cpu")
    assert (info.rank, info.world_size, info.distributed) == (0, 1, False)
    assert dist_utils.is_main() and dist_utils.get_world_size() == 1
    assert torch.equal(dist_utils.all_reduce_sum(torch.tensor([2.0])), torch.tensor([2.0]))
    assert dist_utils.all_gather_objects({"a": 1}) == [{"a": 1}]
    dist_utils.barrier()
    dist_utils.cleanup()
