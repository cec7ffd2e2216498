"""``python -m dastc.data.index dataset=synthia|viper|toy``: build the source clips' class index that DA-STC's
rare-class pasting and rare class sampling draw from (docs/method.md, Rare-class pasting), write it to
``dataset.class_index`` and print how many clips hold each class and its share of the labelled pixels,
long-tail classes marked."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from dastc.build import build_datamodule
from dastc.cli import user_errors
from dastc.data.class_index import ClassIndex, load_or_build_class_index
from dastc.errors import ConfigError


def write_index(cfg: DictConfig, console: Console | None = None) -> ClassIndex:
    """Build (or, unless ``index.rebuild``, reuse) the index at ``dataset.class_index``; returns it."""
    console = console or Console()
    path = cfg.dataset.get("class_index")
    if not path:
        raise ConfigError(
            f"dataset={cfg.dataset.name} sets no dataset.class_index file to write the index to"
        )
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()  # the toy benchmark generates itself; real ones must be there
    source = instantiate(datamodule.configs["source"])
    if cfg.index.rebuild:
        Path(path).unlink(missing_ok=True)
    index = load_or_build_class_index(source, path, datamodule.num_classes, datamodule.ignore_index)
    long_tail = set(cfg.dataset.schedule.get("long_tail_classes") or ())
    totals = index.totals()
    shares = totals / max(int(totals.sum()), 1)
    table = Table(title=f"Source clips per class ({len(source)} clips), dataset={datamodule.name}")
    for column in ("id", "class", "clips", "pixels %", "long-tail"):
        table.add_column(column, justify="left" if column in ("class", "long-tail") else "right")
    for c, name in enumerate(datamodule.class_names):
        row = [
            str(c),
            name,
            str(len(index.clips[c])),
            f"{100 * shares[c]:.2f}",
            "yes" if c in long_tail else "",
        ]
        table.add_row(*row)
    console.print(table)
    console.print(f"Class index: {path}", highlight=False, soft_wrap=True)
    return index


@hydra.main(version_base="1.3", config_path="../../conf", config_name="index")
def main(cfg: DictConfig) -> None:
    with user_errors():
        write_index(cfg)


if __name__ == "__main__":
    main()
