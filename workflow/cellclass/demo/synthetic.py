"""Synthetic widefield fluorescence fields: the embedded demo data, deterministic from a seed.

Cells are irregular discs with a dark nucleus and a diffuse, textured cytoplasmic
protein (channel 0) and a DAPI-like nuclear stain (channel 1). In the `aggregates`
class the protein also forms puncta in the cytoplasm: bright and obvious in the
`aggregates` pattern (like Snap29 depletion), faint and grain-like in the `subtle`
pattern (like Snf7 depletion). The optics and camera add blur, vignetting, shot
noise, gain, offset and read noise.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError

PATTERNS = ("aggregates", "subtle")
CLASSES = ("control", "aggregates")

# Per-pattern look of the aggregates class: puncta per cell, punctum sigma (px),
# extra peak as a multiple of the local cytoplasm, and the diffuse level left.
_PUNCTA = {
    "aggregates": {"count": (2, 7), "sigma": (1.0, 2.0), "peak": (3.0, 6.0), "diffuse": 0.8},
    "subtle": {"count": (1, 4), "sigma": (1.0, 1.6), "peak": (0.5, 0.9), "diffuse": 1.0},
}
_RADIUS = (16.0, 28.0)  # cell radius in px, fixed so a 64-px tile holds one or a few cells
_CYTO_E = 250.0  # median cytoplasm photo-electrons at full illumination
_NUCLEUS_E = 700.0  # median nuclear stain photo-electrons
_BACKGROUND_E = 8.0  # medium autofluorescence
_NUCLEUS_LEAK = 0.2  # cytoplasm channel inside the nucleus, relative to the cytoplasm
_PSF_SIGMA = 1.0
_GAIN = 2.0  # ADU per photo-electron
_OFFSET = 100.0  # ADU
_READ_NOISE_E = 1.6
_HALF_MAX_RADIUS = np.sqrt(2 * np.log(2))  # a Gaussian's half-maximum radius in sigmas


@dataclass(frozen=True)
class DemoField:
    image: np.ndarray  # uint16 (C, Y, X)
    puncta_mask: np.ndarray  # uint8 (Y, X)
    cell_labels: np.ndarray  # uint16 (Y, X)
    nucleus_labels: np.ndarray  # uint16 (Y, X); cell k's nucleus is k, on the pixels cell k owns


@dataclass(frozen=True)
class _Cell:
    cy: float
    cx: float
    radius: float
    harmonics: np.ndarray  # (k, amplitude, phase) rows perturbing the boundary radius
    brightness: float
    nucleus_brightness: float
    nucleus: tuple  # (dy, dx, semi-axis a, semi-axis b, angle) relative to the cell centre


def render_field(
    pattern: str,
    cls: str,
    *,
    seed: int,
    index: int,
    size: int = 1024,
    cells_per_field: int = 40,
    channels: int = 2,
    puncta_fraction: float = 1.0,
) -> DemoField:
    """Render one field; a pure function of its arguments, so reruns are byte-identical.

    In the aggregates class a `puncta_fraction` below 1 gives puncta to that share of the cells only (a dose
    series of a screening plate), chosen by a generator of its own so every other draw stays as at 1.
    """
    _require(pattern, PATTERNS, "pattern")
    _require(cls, CLASSES, "class")
    rng = np.random.default_rng(np.random.SeedSequence([seed, PATTERNS.index(pattern), CLASSES.index(cls), index]))
    cells = _place_cells(rng, size, cells_per_field)
    smooth = _texture(rng, size, 4.0)
    grain = _texture(rng, size, 1.0)

    affected = np.full(len(cells), cls == "aggregates")
    if cls == "aggregates" and puncta_fraction < 1:
        chooser = np.random.default_rng(np.random.SeedSequence([seed, PATTERNS.index(pattern), index, 1]))
        affected = chooser.random(len(cells)) < puncta_fraction
    cyto = np.zeros((size, size), np.float32)
    nuclear = np.zeros((size, size), np.float32)
    labels = np.zeros((size, size), np.uint16)
    nuclei = np.zeros((size, size), np.uint16)
    core = []  # per cell: where it was painted and how far each pixel is from its edge and nucleus
    for label, (cell, hit) in enumerate(zip(cells, affected), start=1):
        diffuse = _PUNCTA[pattern]["diffuse"] if hit else 1.0
        core.append(_paint_cell(cell, label, diffuse, labels, nuclei, cyto, nuclear))
    cyto *= np.clip(1 + 0.12 * smooth + 0.1 * grain, 0.2, None)
    # The grain doubles as chromatin; where they share pixels the protein channel is dim.
    nuclear *= np.clip(1 + 0.15 * grain, 0.2, None)
    cyto = _blur(cyto, _PSF_SIGMA, truncate=3)
    nuclear = _blur(nuclear, _PSF_SIGMA, truncate=3)

    mask = np.zeros((size, size), np.uint8)
    if cls == "aggregates":
        _add_puncta(rng, _PUNCTA[pattern], [c for c, hit in zip(core, affected) if hit], cyto, mask)

    yy, xx = np.ogrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    corner = max(cy, size - cy) ** 2 + max(cx, size - cx) ** 2
    illumination = 1 - rng.uniform(0.3, 0.45) * ((yy - cy) ** 2 + (xx - cx) ** 2) / corner
    exposure = rng.lognormal(0, 0.1) * illumination
    planes = [cyto, nuclear][:channels]
    image = np.stack([_camera(rng, exposure * (plane + _BACKGROUND_E)) for plane in planes])
    return DemoField(image, mask, labels, nuclei)


def field_names(fields_per_class: int) -> list[tuple[str, str]]:
    """[(class, stem), ...] of a demo dataset, known before any file exists so jobs can be planned."""
    return [(cls, f"field_{i:03d}") for cls in CLASSES for i in range(fields_per_class)]


def write_field(
    image_path,
    puncta_path,
    cells_path,
    nuclei_path,
    *,
    pattern,
    cls,
    stem,
    seed,
    size=1024,
    cells_per_field=40,
    channels=2,
):
    """Render the field named `stem` and write its image, puncta mask, cell and nucleus labels atomically."""
    match = re.fullmatch(r"field_(\d+)", stem)
    if not match:
        raise InputError(f"demo field name {stem!r}: expected field_<number>")
    field = render_field(
        pattern, cls, seed=seed, index=int(match[1]), size=size, cells_per_field=cells_per_field, channels=channels
    )
    for path, array, axes in (
        (image_path, field.image, "CYX"),
        (puncta_path, field.puncta_mask, "YX"),
        (cells_path, field.cell_labels, "YX"),
        (nuclei_path, field.nucleus_labels, "YX"),
    ):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, array, imagej=True, metadata={"axes": axes})
    return Path(image_path)


def write_dataset(
    root,
    pattern: str,
    *,
    fields_per_class: int,
    seed: int,
    size: int = 1024,
    cells_per_field: int = 40,
    channels: int = 2,
) -> list[Path]:
    """Write images/, masks/, cells/ and nuclei/ <class>/<stem>.tif under root; return the image paths."""
    _require(pattern, PATTERNS, "pattern")
    root = Path(root)
    return [
        write_field(
            root / "images" / cls / f"{stem}.tif",
            root / "masks" / cls / f"{stem}.tif",
            root / "cells" / cls / f"{stem}.tif",
            root / "nuclei" / cls / f"{stem}.tif",
            pattern=pattern,
            cls=cls,
            stem=stem,
            seed=seed,
            size=size,
            cells_per_field=cells_per_field,
            channels=channels,
        )
        for cls, stem in field_names(fields_per_class)
    ]


def _require(value, options, what):
    if value not in options:
        raise InputError(f"unknown demo {what} {value!r}: expected one of {', '.join(options)}")


def _place_cells(rng, size, count):
    """Random cells whose centres keep apart (rejection sampling), so cells touch but rarely overlap."""
    cells, centres, radii = [], np.empty((0, 2)), np.empty(0)
    for _ in range(count):
        radius = rng.uniform(*_RADIUS)
        candidates = rng.uniform(0, size, (32, 2))
        gaps = np.linalg.norm(candidates[:, None] - centres[None], axis=2) - 0.9 * (radius + radii)
        free = np.flatnonzero((gaps >= 0).all(axis=1))
        if free.size == 0:
            continue
        cy, cx = candidates[free[0]]
        centres, radii = np.vstack([centres, [cy, cx]]), np.append(radii, radius)
        k = np.arange(2, 5)
        harmonics = np.column_stack([k, rng.uniform(0, 1, 3) * [0.15, 0.08, 0.05], rng.uniform(0, 2 * np.pi, 3)])
        # The nucleus must fit inside the narrowest part of the perturbed boundary.
        inner = radius * (1 - harmonics[:, 1].sum())
        a = rng.uniform(0.45, 0.6) * inner
        b = a * rng.uniform(0.7, 1.0)
        shift = rng.uniform(0, 0.9 * inner - a)
        direction = rng.uniform(0, 2 * np.pi)
        nucleus = (shift * np.sin(direction), shift * np.cos(direction), a, b, rng.uniform(0, np.pi))
        brightness = _CYTO_E * rng.lognormal(0, 0.35)
        nucleus_brightness = _NUCLEUS_E * rng.lognormal(0, 0.25)
        cells.append(_Cell(cy, cx, radius, harmonics, brightness, nucleus_brightness, nucleus))
    return cells


def _blur(field, sigma, **options):
    # scipy.ndimage is imported here: every Snakemake start imports this module (to name the demo's files)
    # and only the demo jobs draw images.
    from scipy import ndimage

    return ndimage.gaussian_filter(field, sigma, **options)


def _texture(rng, size, sigma):
    """Smooth random field with zero mean and unit standard deviation."""
    field = _blur(rng.standard_normal((size, size), np.float32), sigma, truncate=3)
    return field / field.std()


def _paint_cell(cell, label, diffuse, labels, nuclei, cyto, nuclear):
    """Paint one cell and its nucleus label in its bounding box (first cell wins shared pixels); return where
    puncta may go."""
    size = labels.shape[0]
    reach = cell.radius * (1 + cell.harmonics[:, 1].sum()) + 1
    y0, y1 = max(int(cell.cy - reach), 0), min(int(cell.cy + reach) + 2, size)
    x0, x1 = max(int(cell.cx - reach), 0), min(int(cell.cx + reach) + 2, size)
    dy = np.arange(y0, y1)[:, None] - cell.cy
    dx = np.arange(x0, x1)[None, :] - cell.cx
    theta = np.arctan2(dy, dx)
    k, amplitude, phase = cell.harmonics.T[:, :, None, None]
    boundary = cell.radius * (1 + (amplitude * np.cos(k * theta + phase)).sum(axis=0))
    rho = np.hypot(dy, dx) / boundary
    ny, nx, a, b, angle = cell.nucleus
    u = (dy - ny) * np.sin(angle) + (dx - nx) * np.cos(angle)
    v = (dy - ny) * np.cos(angle) - (dx - nx) * np.sin(angle)
    ellipse = np.hypot(u / a, v / b)  # 1 on the nuclear envelope

    box = (slice(y0, y1), slice(x0, x1))
    own = (rho <= 1) & (labels[box] == 0)
    in_nucleus = ellipse <= 1
    labels[box][own] = label
    nuclei[box][own & in_nucleus] = label
    # Cytoplasm is thickest around the nucleus and thins towards the cell edge.
    thickness = 0.4 + 0.6 * (1 - np.minimum(rho, 1) ** 2)
    cyto[box][own] = (cell.brightness * diffuse * thickness * np.where(in_nucleus, _NUCLEUS_LEAK, 1.0))[own]
    dome = 0.75 + 0.25 * (1 - np.minimum(ellipse, 1) ** 2)
    nuclear[box][own] = (cell.nucleus_brightness * np.where(in_nucleus, dome, 0.03))[own]
    # Lower bounds on the distance to the cell edge and to the nuclear envelope, in px.
    edge = (1 - rho) * boundary * 0.9
    envelope = (ellipse - 1) * b
    return box, own, edge, envelope


def _add_puncta(rng, spec, core, cyto, mask):
    """Add Gaussian puncta to each cell's cytoplasm, away from its edge and nucleus, and mark their half-max disks."""
    size = cyto.shape[0]
    level = cyto.copy()  # the diffuse cytoplasm the puncta are scaled to
    for (ys, xs), own, edge, envelope in core:
        count = rng.integers(spec["count"][0], spec["count"][1] + 1)
        sigmas = rng.uniform(*spec["sigma"], count)
        peaks = rng.uniform(*spec["peak"], count)
        jitter = rng.uniform(-0.5, 0.5, (count, 2))
        for sigma, peak, (jy, jx) in zip(sigmas, peaks, jitter):
            margin = _HALF_MAX_RADIUS * sigma + 1.5
            ok = np.flatnonzero(own & (edge >= margin) & (envelope >= margin))
            if ok.size == 0:
                continue
            py, px = np.unravel_index(ok[rng.integers(ok.size)], own.shape)
            py, px = py + ys.start, px + xs.start
            amplitude = peak * level[py, px]
            cy, cx = py + jy, px + jx
            reach = int(np.ceil(4 * sigma))
            y0, y1 = max(py - reach, 0), min(py + reach + 1, size)
            x0, x1 = max(px - reach, 0), min(px + reach + 1, size)
            r2 = (np.arange(y0, y1)[:, None] - cy) ** 2 + (np.arange(x0, x1)[None, :] - cx) ** 2
            cyto[y0:y1, x0:x1] += amplitude * np.exp(-r2 / (2 * sigma**2))
            mask[y0:y1, x0:x1] |= r2 <= (_HALF_MAX_RADIUS * sigma) ** 2


def _camera(rng, photons):
    """Shot noise on the expected photo-electrons, then gain, offset and read noise, as uint16 ADU."""
    electrons = rng.poisson(photons) + rng.normal(0, _READ_NOISE_E, photons.shape)
    return np.clip(np.rint(_OFFSET + _GAIN * electrons), 0, 65535).astype(np.uint16)


def write_single_cells(folder, n, *, size=78, n_classes=6, seed=0):
    """n single-cell crops as 8-bit PNGs in class folders (`class<k>/cell_NNNNNN.png`, classes dealt in turn):
    one bright cell on camera noise; class k holds k bright spots, so the classes are learnable at a glance."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    cell = 40 * np.exp(-(x**2 + y**2) / (2 * (size / 5) ** 2))
    folder = Path(folder)
    for k in range(n_classes):
        (folder / f"class{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = i % n_classes
        image = cell + rng.normal(10, 3, (size, size))
        for sy, sx in rng.integers(size // 3, 2 * size // 3, (k, 2)):
            image[sy - 1 : sy + 2, sx - 1 : sx + 2] += 120
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"class{k}" / f"cell_{i:06d}.png")


def plate_map(spec):
    """The plate map of a demo plate, as plates.read_plate_map gives one: wells filled row by row with
    `controls` negative controls, `controls` positive controls, then each dose `replicates` times. A dose's
    share of cells with puncta is a Hill curve, 1 / (1 + (ec50 / dose) ** hill): the truth a fit should find."""
    import pandas as pd

    roles = ["negative_control"] * spec["controls"] + ["positive_control"] * spec["controls"]
    doses = [np.nan] * len(roles) + [d for d in spec["doses"] for _ in range(spec["replicates"])]
    roles += ["sample"] * (len(doses) - len(roles))
    if len(roles) > spec["rows"] * spec["columns"]:
        raise InputError(f"demo plate: {len(roles)} wells do not fit {spec['rows']} x {spec['columns']}")
    wells = [f"{chr(ord('A') + i // spec['columns'])}{i % spec['columns'] + 1:02d}" for i in range(len(roles))]
    dose = np.array(doses, dtype=float)
    table = pd.DataFrame(
        {
            "plate": spec["name"],
            "well": wells,
            "condition": [
                "DMSO" if r == "negative_control" else "siSNAP29" if r == "positive_control" else "drug" for r in roles
            ],
            "class": [
                "control" if r == "negative_control" else "aggregates" if r == "positive_control" else "" for r in roles
            ],
            "dose": dose,
            "unit": ["" if np.isnan(d) else spec["unit"] for d in dose],
            "role": roles,
        }
    )
    table["puncta_fraction"] = np.where(
        table["role"] == "positive_control", 1.0, np.nan_to_num(1 / (1 + (spec["ec50"] / dose) ** spec["hill"]))
    )
    table["line"] = range(2, len(table) + 2)
    return table


def write_plate_field(paths, *, well, spec):
    """Render well `well` of a demo plate and write one single-channel TIFF per channel (as plate imagers do).
    A well in the spec's `unfamiliar_wells` gets striped cells (striped_cells): a phenotype no network saw."""
    table = plate_map(spec).set_index("well")
    if well not in table.index:
        raise InputError(f"demo plate {spec['name']}: no well {well}")
    row = table.loc[well]
    field = render_field(
        "aggregates",
        "control" if row["role"] == "negative_control" else "aggregates",
        seed=spec["seed"],
        index=int(row["line"]),
        size=spec["size"],
        cells_per_field=spec["cells_per_field"],
        puncta_fraction=float(row["puncta_fraction"]),
    )
    image = field.image
    if well in spec.get("unfamiliar_wells", ()):
        image = striped_cells(field, seed=spec["seed"] + int(row["line"]))
    for path, plane in zip(paths, image):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, plane, imagej=True, metadata={"axes": "YX"})


def write_plate(paths, *, spec):
    """Render every well of a demo plate: `paths` holds each well's channel files in plate-map order."""
    wells = plate_map(spec)["well"].tolist()
    unknown = sorted(set(spec.get("unfamiliar_wells", ())) - set(wells))
    if unknown:
        raise InputError(f"demo plate {spec['name']}: unfamiliar_wells {', '.join(unknown)} are not wells of the plate")
    if len(paths) != 2 * len(wells):
        raise InputError(f"demo plate {spec['name']}: {len(paths)} files for {len(wells)} wells of 2 channels")
    for i, well in enumerate(wells):
        write_plate_field(paths[2 * i : 2 * i + 2], well=well, spec=spec)


UNFAMILIAR = ("stripes", "noise")


def render_unfamiliar(kind, *, seed, size=512, channels=2):
    """A field of something the demo networks never saw, through the same camera, uint16 (C, Y, X): `stripes`,
    bars at a random angle and period as bright as cytoplasm in every channel; `noise`, an empty field of
    camera noise with a smooth glow. For checking that prediction abstains on images of another kind."""
    _require(kind, UNFAMILIAR, "unfamiliar kind")
    rng = np.random.default_rng(np.random.SeedSequence([seed, UNFAMILIAR.index(kind), 17]))
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    if kind == "stripes":
        bars = _bars(rng, size)
        planes = [bars * _CYTO_E, bars * _NUCLEUS_E][:channels]
    else:
        glow = 1 + 0.5 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 3) ** 2))
        planes = [glow * 3 * _BACKGROUND_E] * channels
    return np.stack([_camera(rng, plane + _BACKGROUND_E) for plane in planes])


def _bars(rng, size):
    """Bars (1) and gaps (0) at a random angle and period, (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    angle, period = rng.uniform(0, np.pi), rng.uniform(12, 30)
    return (np.sin(2 * np.pi * (yy * np.cos(angle) + xx * np.sin(angle)) / period) > 0).astype(float)


def striped_cells(field, *, seed):
    """A demo field whose cells show a phenotype the demo networks never saw: bright bars across each cell's
    protein channel (about 3x its cytoplasm), nuclei untouched so they are still found. uint16 (C, Y, X)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 23]))
    bars = _bars(rng, field.image.shape[-1]) * (field.cell_labels > 0)
    image = field.image.astype(np.float64)
    image[0] += bars * 3 * _CYTO_E * _GAIN
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def write_unfamiliar(path, kind, *, seed, size=512, channels=2):
    """Write render_unfamiliar's field as a TIFF the way demo fields are written."""
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, render_unfamiliar(kind, seed=seed, size=size, channels=channels), imagej=True, metadata={"axes": "CYX"}
        )
    return Path(path)
