"""Single-cell crops: one window per nucleus, centred on it, with the masks of its own nucleus and cell.

The nuclei come from a user's label image (CellProfiler, Cellpose, StarDist,
...) or from our segmentation (`segment`); cells come from the user's cell
label image or are grown from the nuclei. Each crop records its label id,
centroid and area, so every prediction leads back to an object of a field.
"""

import numpy as np
import tifffile
from PIL import Image
from skimage.measure import regionprops_table

from cellclass.io.errors import InputError
from cellclass.prepare import segment

# Compartment codes of a crop's mask: only the crop's own object is marked, never its neighbours.
OUTSIDE, CYTOPLASM, NUCLEUS = 0, 1, 2
# Which compartments a crop has masks for: nuclei alone, or cells too.
NUCLEI_ONLY = ["nucleus"]
WITH_CELLS = ["nucleus", "cytoplasm", "cell"]


def compartment_mask(compartments, name):
    """Boolean masks (n, H, W) of one named compartment from crops' compartment codes."""
    codes = np.asarray(compartments)
    if name == "nucleus":
        return codes == NUCLEUS
    if name == "cytoplasm":
        return codes == CYTOPLASM
    if name == "cell":
        return codes != OUTSIDE
    raise ValueError(f"unknown compartment {name!r}; expected one of {', '.join(WITH_CELLS)}")


def read_labels(path, shape, field_files):
    """A user's label image as int32 (Y, X); a clear error naming both files when it does not fit the field."""
    try:
        labels = (
            tifffile.imread(path) if str(path).lower().endswith((".tif", ".tiff")) else np.asarray(Image.open(path))
        )
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad input file
        raise InputError(f"label image {path}: cannot be read ({error})") from None
    labels = np.squeeze(labels)
    if labels.dtype.kind not in "ui":
        raise InputError(f"label image {path}: {labels.dtype} pixels; a label image holds integer object ids")
    if labels.shape != tuple(shape):
        raise InputError(
            f"label image {path} is {'x'.join(map(str, labels.shape))} px but its field "
            f"{', '.join(field_files)} is {'x'.join(map(str, shape))} px; they must match pixel for pixel"
        )
    if labels.min() < 0:
        raise InputError(f"label image {path}: negative label ids")
    return labels.astype(np.int32)


def cells_of_nuclei(nuclei, cells):
    """Cell labels renumbered to their nucleus's id: each nucleus takes the cell it overlaps most, and its
    whole nucleus belongs to that cell. Cells without a nucleus are dropped."""
    inside = (nuclei > 0) & (cells > 0)
    aligned = np.zeros_like(nuclei)
    if inside.any():
        pairs, counts = np.unique(np.stack([nuclei[inside], cells[inside]]), axis=1, return_counts=True)
        order = np.lexsort((-counts, pairs[0]))  # per nucleus, the largest overlap first
        nucleus_ids, first = np.unique(pairs[0][order], return_index=True)
        lut = np.zeros(int(cells.max()) + 1, np.int32)
        lut[pairs[1][order][first]] = nucleus_ids
        aligned = lut[cells]
    aligned[nuclei > 0] = nuclei[nuclei > 0]
    return aligned


def segment_options(settings):
    """prepare.nuclei settings as the keywords of segment.segment_nuclei and segment.grow_cells (None: no cells)."""
    nuclei = {
        k: settings[k]
        for k in (
            "channel",
            "method",
            "smooth_sigma",
            "min_contrast",
            "min_area",
            "max_area",
            "min_distance",
            "exclude_border",
        )
    }
    if settings["cell_channel"] is None:
        return nuclei, None
    cells = {
        "channel": settings["cell_channel"],
        "method": settings["cell_method"],
        "smooth_sigma": settings["cell_smooth_sigma"],
        "min_contrast": settings["cell_min_contrast"],
    }
    return nuclei, cells


def find_objects(sample, field, settings):
    """Nuclei and cells (None: not asked for) of one field as label images sharing ids, and where they came from."""
    shape = field.shape[:2]
    if sample.labels:
        nuclei = read_labels(sample.labels, shape, sample.files)
        cells = (
            cells_of_nuclei(nuclei, read_labels(sample.cell_labels, shape, sample.files))
            if sample.cell_labels
            else None
        )
        return nuclei, cells, "user labels"
    nuclei_options, cell_options = segment_options(settings)
    nuclei = segment.segment_nuclei(field, **nuclei_options)
    cells = segment.grow_cells(nuclei, field, **cell_options) if cell_options else None
    return nuclei, cells, "segmented"


def resize_codes(masks, out_size):
    """Resize (n, s, s) integer masks to out_size by nearest neighbour (codes must not blend)."""
    size = masks.shape[1]
    if size == out_size:
        return masks
    index = np.minimum(((np.arange(out_size) + 0.5) * size / out_size).astype(int), size - 1)
    return masks[:, index][:, :, index]


def crop_objects(field, nuclei, cells, *, size):
    """One `size` window per nucleus, centred on its centroid (zero beyond the field).

    Returns tiles (n, size, size, C), the windows' top-left rows and cols in the field (negative where a
    window starts outside it) and per-crop arrays: label, centroid_y, centroid_x, area (px) and
    compartments (n, size, size) uint8 codes of the crop's own nucleus and cytoplasm.
    """
    props = regionprops_table(nuclei, properties=("label", "centroid", "area"))
    labels = props["label"].astype(np.int32)
    rows = np.rint(props["centroid-0"]).astype(np.int32) - size // 2
    cols = np.rint(props["centroid-1"]).astype(np.int32) - size // 2
    pad = ((size, size), (size, size))
    padded = np.pad(field, (*pad, (0, 0)))
    padded_nuclei = np.pad(nuclei, pad)
    padded_cells = np.pad(cells, pad) if cells is not None else None
    tiles = np.empty((len(labels), size, size, field.shape[-1]), np.float32)
    compartments = np.zeros((len(labels), size, size), np.uint8)
    for i, (label, r, c) in enumerate(zip(labels, rows + size, cols + size)):
        window = (slice(r, r + size), slice(c, c + size))
        tiles[i] = padded[window]
        if padded_cells is not None:
            compartments[i][padded_cells[window] == label] = CYTOPLASM
        compartments[i][padded_nuclei[window] == label] = NUCLEUS
    extra = {
        "label": labels,
        "centroid_y": props["centroid-0"].astype(np.float32),
        "centroid_x": props["centroid-1"].astype(np.float32),
        "area": props["area"].astype(np.int32),
        "compartments": compartments,
    }
    return tiles, rows, cols, extra
