import json

import lightning as L
import pytest
import torch

from dfss.data.batch import DetectionBatch
from dfss.data.datamodule import XrayDataModule
from dfss.data.errors import DataError
from dfss.data.mosaic import MosaicMixup
from dfss.data.validate import DataValidationError


def _dm(root, **kwargs):
    kwargs = {"image_size": 64, "batch_size": 2, "num_workers": 0, "pin_memory": False, **kwargs}
    return XrayDataModule(root, **kwargs)


def test_fit_setup_gives_batched_loaders_over_train_and_val(tiny_xray):
    dm = _dm(tiny_xray)
    assert dm.class_table.names == ["knife", "phone", "keys"]  # readable before setup
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(isinstance(b, DetectionBatch) for b in batches)
    assert batches[0].images.shape == (2, 3, 64, 64)
    assert sorted(i for b in batches for i in b.image_ids.tolist()) == [1, 2, 3, 4, 5, 6]
    val = list(dm.val_dataloader())
    assert [b.image_ids.tolist() for b in val] == [[1, 2], [3]]  # in order, nothing dropped
    assert "test" not in dm.datasets


def test_training_loader_with_workers_and_pinned_memory(tiny_xray, recwarn):
    dm = _dm(tiny_xray, num_workers=2, pin_memory=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    ids = sorted(i for b in loader for i in b.image_ids.tolist())
    assert ids == [1, 2, 3, 4, 5, 6]
    # Pinned only where there is an accelerator to copy to; on a CPU-only machine no torch warning.
    assert loader.pin_memory == torch.accelerator.is_available()
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning memory needs a CUDA runtime")
def test_pin_memory_keeps_the_batch_type(tiny_xray):
    dm = _dm(tiny_xray)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    pinned = batch.pin_memory()
    assert isinstance(pinned, DetectionBatch) and pinned.images.is_pinned() and pinned.boxes[0].is_pinned()


def test_bad_image_fails_setup_by_default_and_is_skipped_with_a_report_on_request(tiny_xray, tmp_path):
    (tiny_xray / "images" / "train" / "0002.png").write_bytes(b"garbage")
    with pytest.raises(DataValidationError, match=r"0002\.png"):
        _dm(tiny_xray).setup("fit")
    dm = _dm(tiny_xray, on_error="skip", report_dir=tmp_path / "run")
    dm.setup("fit")
    assert dm.datasets["train"].image_ids == [1, 3, 4, 5, 6]
    report = json.loads((tmp_path / "run" / "data_report_train.json").read_text())
    assert any(p["image_id"] == 2 for p in report["problems"])


def test_splits_with_different_classes_are_refused(tiny_xray):
    path = tiny_xray / "annotations" / "val.json"
    data = json.loads(path.read_text())
    data["categories"][0]["name"] = "padlock"  # id 11 renamed in val only
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"val\.json: its known classes differ"):
        _dm(tiny_xray).setup("fit")


def test_missing_annotation_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"annotation file not found: .*train\.json"):
        _ = _dm(tmp_path / "nowhere").class_table


def test_mosaic_wraps_the_training_split_only(tiny_xray):
    dm = _dm(tiny_xray, mosaic_prob=1.0, mixup_prob=0.5)
    dm.setup("fit")
    assert isinstance(dm.datasets["train"], MosaicMixup)
    assert not isinstance(dm.datasets["val"], MosaicMixup)
    batch = next(iter(dm.train_dataloader()))
    assert batch.images.shape == (2, 3, 64, 64)


class _RecordIds(L.LightningModule):
    """The smallest module that trains: records which images each rank sees."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen.extend(batch.image_ids.tolist())
        return (self.weight * batch.images.float().mean()).sum()

    def on_train_epoch_end(self):
        seen = torch.tensor(self.seen)
        gathered = self.all_gather(torch.nn.functional.pad(seen, (0, 8 - len(seen)), value=-1))
        if self.global_rank == 0:
            torch.save(gathered.cpu(), self.trainer.default_root_dir + "/seen.pt")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_two_process_ddp_gives_each_rank_its_own_shard(tiny_xray, tmp_path):
    dm = _dm(tiny_xray, batch_size=1)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(_RecordIds(), datamodule=dm)
    seen = torch.load(tmp_path / "seen.pt")
    per_rank = [set(row[row >= 0].tolist()) for row in seen]
    assert per_rank[0].isdisjoint(per_rank[1])
    assert per_rank[0] | per_rank[1] == {1, 2, 3, 4, 5, 6}


def test_the_mosaic_closes_in_persistent_worker_processes_at_its_epoch(tiny_xray):
    """The epoch reaches the workers with every index: no mosaic from close_mosaic_epoch on."""
    from dfss.data.transforms import build_eval_transforms, build_train_transforms

    plain = build_train_transforms(64, hflip=0.0, scale_jitter=None, brightness=0, contrast=0, saturation=0)
    dm = _dm(tiny_xray, num_workers=1, mosaic_prob=1.0, close_mosaic_epoch=1, train_transforms=plain)
    dm.setup("fit")
    letterbox = build_eval_transforms(64)
    loader = dm.train_dataloader()

    def epoch(n):
        loader.sampler.set_epoch(n)
        changed = []
        for batch in loader:
            for image, image_id in zip(batch.images, batch.image_ids.tolist(), strict=True):
                expected = letterbox(*dm.datasets["train"].dataset[image_id - 1])[0]
                changed.append(not torch.equal(image, expected))
        return changed

    assert sum(epoch(0)) >= 5  # mosaics, not the plain letterboxed images
    assert epoch(1) == [False] * 6  # the same worker process, now plain samples
    assert loader.persistent_workers
