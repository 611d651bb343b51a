"""Prepare throughput: our tile + split + augment against the article's way, same images, one run.

The baseline does what the article's scripts did: open each field with Pillow,
crop every tile, rotate/flip each crop and save one PNG per copy. Ours writes
one shard file of tiles and one of the training tiles' rotated copies (the
angles, resampled from the field); the 8 flips/rotations of each, which the
baseline saves, ours makes on the fly in training (bench/loader.py times that).
Prints megapixels of raw field per second for each and the ratio (target: ours >= 3x).

    python bench/prepare.py [--fields 12] [--size 1024]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cellclass.config import validate
from cellclass.demo import synthetic
from cellclass.io import tilestore
from cellclass.io.datasets import from_folder
from cellclass.prepare import augment, split, tiling

ANGLES = [18, 36, 54, 72]  # the article's 18-degree steps, first quarter turn
DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def ours(samples, settings, out):
    sides = split.assign(samples, seed=0, test_fraction=0.2)
    tilesets, augmented = [], []
    for sample in samples:
        tilesets.append(tiling.tile_sample(sample, settings))
        if sides[sample.group] == "train":
            field = tiling.load_field(sample, settings)[0]
            augmented.append(augment.augment(tilesets[-1], field=field, angles=ANGLES))
    tilestore.save(out / "tiles.npz", tilesets)
    tilestore.save(out / "augmented.npz", augmented)
    return sides


def baseline(samples, settings, sides, out):
    """One PNG per tile copy, rotated crop by crop with Pillow (corners filled black)."""
    size = settings["tile_size"]
    where = {t.meta["sample"]: t for t in tilestore.load(out / "ours" / "tiles.npz", tiles=False)}
    for sample in samples:
        positions = where[sample.id]
        image = Image.open(sample.files[0])
        image.seek(0)  # first channel page, as the article's 8-bit conversion
        field = Image.fromarray((np.asarray(image, dtype=np.float32) / 257).astype(np.uint8))
        folder = out / "baseline" / sample.id
        folder.mkdir(parents=True, exist_ok=True)
        for i, (r, c) in enumerate(zip(positions.rows, positions.cols)):
            crop = field.crop((int(c), int(r), int(c) + size, int(r) + size))
            crop.save(folder / f"{i}.png")
            if sides[sample.group] != "train":
                continue
            for angle in [0, *ANGLES]:
                rotated = crop.rotate(angle)
                for k, flip in DIHEDRAL:
                    copy = rotated.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else rotated
                    copy = copy.rotate(90 * k, expand=True)
                    copy.save(folder / f"{i}_{angle}_{k}_{int(flip)}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=12)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic.write_dataset(
            tmp / "data", "aggregates", fields_per_class=args.fields // 2, seed=0, size=args.size, channels=1
        )
        samples = from_folder(tmp / "data" / "images")
        settings = validate({"datasets": {"d": {"path": str(tmp / "data" / "images")}}})["datasets"]["d"]["prepare"]
        megapixels = len(samples) * args.size**2 / 1e6

        start = time.perf_counter()
        sides = ours(samples, settings, tmp / "ours")
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        baseline(samples, settings, sides, tmp)
        base_s = time.perf_counter() - start

        n_tiles = sum(len(t) for t in tilestore.load(tmp / "ours" / "augmented.npz", tiles=False))
        print(
            f"{len(samples)} fields of {args.size}x{args.size} ({megapixels:.1f} MP), {n_tiles} stored training tiles "
            f"and rotated copies ({8 * n_tiles} with the flips/rotations training makes on the fly)"
        )
        print(f"ours:     {ours_s:7.2f} s  {megapixels / ours_s:7.2f} MP/s")
        print(f"baseline: {base_s:7.2f} s  {megapixels / base_s:7.2f} MP/s  (Pillow, one PNG per tile)")
        print(f"ratio:    {base_s / ours_s:7.2f}x  (target >= 3x)")


if __name__ == "__main__":
    main()
