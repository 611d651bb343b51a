"""Stream tiles from the shard files into Keras, in bounded memory, augmented on the fly.

Each pass is a global shuffle: a seeded permutation of every training tile,
cut into batches, each batch gathered from the shards it touches. So a batch
mixes images and classes as well as an in-memory shuffle would, however the
images are spread over shards, and only the batches being made are in memory
whatever the dataset's size.

Every batch is a pure function of (seed, pass, batch index): its tiles come
from the pass's permutation and its augmentation (a random one of the 8
rotations and flips per tile, intensity jitter, noise, zoom) from a generator
seeded by the three. So batches can be made in parallel and still arrive
exactly as made one by one, and a run resumed at any epoch sees what an
uninterrupted run would have seen.
"""

import math

import numpy as np

from cellclass.io import tilestore

# What the input pipeline can do to a training tile (config `augment`); all off is the tile as stored.
NO_AUGMENTATION = {"dihedral": False, "brightness": 0.0, "contrast": 0.0, "noise": 0.0, "scale": 0.0}
ENDLESS = 2**62  # batch indices of a stream that does not end (an epoch takes `steps` of them)
# The dihedral ops (as `dihedral` numbers them) in the order the stored copies of before held them: np.rot90 by
# 0-3 quarter turns of the tile, then of the tile flipped left-right. views="all" enumerates them in this order.
STORED_VIEW_ORDER = (0, 3, 6, 5, 4, 1, 2, 7)


def class_repeats(tile_labels, n_classes):
    """How often each class's tiles are drawn per pass so that every class brings about as many tiles as the
    largest (an integer per class, so a pass has a fixed length)."""
    per_class = np.bincount(np.asarray(tile_labels, dtype=int), minlength=n_classes)
    present = per_class[per_class > 0]
    factor = np.ones(n_classes, dtype=int)
    if len(present):
        factor[per_class > 0] = np.maximum(1, np.rint(present.max() / present)).astype(int)
    return factor


def tile_index(tilesets, labels):
    """Per tile of `tilesets`: which TileSet it is in, its row there, and its label."""
    counts = [len(t) for t in tilesets]
    owner = np.repeat(np.arange(len(tilesets)), counts)
    row = np.concatenate([np.arange(n) for n in counts] or [np.empty(0, int)])
    return owner, row, np.repeat(np.asarray(labels, dtype=int), counts)


def every_view(tilesets, labels):
    """tile_index with each tile in its 8 dihedral views: per TileSet, view-major (all rows in the first view, then
    all in the second, ...), as the stored copies were; returns (owner, row, label, view)."""
    owner, row, label, view = [], [], [], []
    for i, tileset in enumerate(tilesets):
        n = len(tileset)
        owner.append(np.full(8 * n, i))
        row.append(np.tile(np.arange(n), 8))
        label.append(np.full(8 * n, labels[i], dtype=int))
        view.append(np.repeat(STORED_VIEW_ORDER, n))
    if not owner:
        return (np.empty(0, int),) * 4
    return tuple(np.concatenate(parts) for parts in (owner, row, label, view))


# float16 -> float32 by table: exact (NumPy's own conversion of every 16-bit pattern) and about twice as fast
# as astype, which matters at tens of thousands of tiles per second.
_HALF_TO_SINGLE = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)


def as_float32(tiles):
    tiles = np.asarray(tiles)
    if tiles.dtype == np.float16:
        return np.take(_HALF_TO_SINGLE, tiles.view(np.uint16))
    return tiles.astype(np.float32, copy=False)


def gather(tilesets, owner, row, channels, reader=None):
    """The tiles (owner[i], row[i]) as one float32 array, read from each TileSet's (stored) tiles; `reader`: a
    tilestore.RowReader of the tilesets' tiles, to be made once for many calls."""
    reader = reader or tilestore.RowReader([t.tiles for t in tilesets])
    dtypes = {reader.dtypes[k] for k in np.unique(owner)}
    raw = np.empty((len(owner), *tilesets[owner[0]].tiles.shape[1:]), dtypes.pop() if len(dtypes) == 1 else np.float32)
    reader.read(owner, row, raw)
    return as_float32(select_channels(raw, channels))


def select_channels(tiles, channels):
    """The tiles' channels fed to the network (None: all)."""
    return tiles if channels is None else tiles[..., list(channels)]


# --- augmentation: each op keeps the tile's content; all take and return float32 (n, h, w, c) batches ---


def _pixels(tiles):
    """A C-ordered (n, h, w, c) array seen as (n, h, w) items of c values: moving a pixel's channels as one item
    is several times faster than NumPy's moves of a trailing axis of 1-4 floats."""
    return tiles.view(np.dtype((np.void, tiles.itemsize * tiles.shape[-1])))[..., 0]


def dihedral(tiles, ops):
    """Tile i turned by op ops[i] of the dihedral group (0..7): bit 1 transposes, bit 2 flips the rows, bit 4 the
    columns; together the 4 rotations by 90 degrees and their mirror images, each a permutation of the pixels."""
    tiles = np.ascontiguousarray(tiles)
    out = np.empty_like(tiles)
    source, target = _pixels(tiles), _pixels(out)
    for i, op in enumerate(ops):
        tile = source[i]
        if op & 1:
            tile = tile.T
        if op & 2:
            tile = tile[::-1]
        if op & 4:
            tile = tile[:, ::-1]
        target[i] = tile
    return out


def _bilinear(size, factors):
    """Per tile, the source pixel pairs and weights of a zoom by `factors` about the tile's centre."""
    centre = (size - 1) / 2
    source = np.clip(centre + (np.arange(size) - centre) / factors[:, None], 0, size - 1)  # zoom out: edge repeats
    low = np.minimum(np.floor(source).astype(np.intp), max(size - 2, 0))
    weight = (source - low).astype(np.float32)
    return low, np.minimum(low + 1, size - 1), weight


def _zoom_rows(tiles, factors):
    """Each tile's rows resampled as `_bilinear` says (columns untouched)."""
    n, height, width, channels = tiles.shape
    at = np.arange(n)[:, None]
    low, high, weight = _bilinear(height, factors)
    # Weights broadcast along whole rows (width * channels values): a loop per row, not per pixel.
    out = tiles[at, low].reshape(n, height, width * channels)
    out *= (1 - weight)[:, :, None]
    other = tiles[at, high].reshape(n, height, width * channels)
    other *= weight[:, :, None]
    out += other
    return out.reshape(n, height, width, channels)


def _transposed(tiles):
    """Each tile transposed (rows <-> columns), as a new C-ordered array."""
    n, height, width, channels = tiles.shape
    swapped = np.ascontiguousarray(_pixels(np.ascontiguousarray(tiles)).transpose(0, 2, 1))
    return swapped[..., None].view(tiles.dtype).reshape(n, width, height, channels)


def zoom(tiles, factors):
    """Tile i magnified by factors[i] about its centre (bilinear; > 1 zooms in). A factor of 1 returns the tile
    exactly; zooming out repeats the edge pixels over the strip it opens, a pixel or two for a few percent."""
    return _transposed(_zoom_rows(_transposed(_zoom_rows(tiles, factors)), factors))


def affine(tiles, gain, offset):
    """tiles * gain + offset with one (gain, offset) per tile and channel (n, c), in place.

    Broadcast over a trailing axis of 1-4 channels NumPy runs a loop per pixel;
    repeated along the row it runs one loop per row, several times faster.
    """
    n, height, width, channels = tiles.shape
    rows = tiles.reshape(n, height, width * channels)
    rows *= np.tile(gain.astype(np.float32), (1, width))[:, None, :]
    rows += np.tile(offset.astype(np.float32), (1, width))[:, None, :]
    return tiles


def channel_means(tiles):
    """(n, c) mean of each tile's channels."""
    n, height, width, channels = tiles.shape
    ones = np.full((1, height * width), 1 / (height * width), np.float32)
    return (ones @ tiles.reshape(n, height * width, channels))[:, 0]


def augment_batch(tiles, rng, options, views=None):
    """The batch `tiles` (float32 (n, h, w, c)) augmented as `options` say, with draws from `rng`; `views`: the
    dihedral op of each tile, given (else drawn).

    Every draw but the noise is made whatever is switched on, in a fixed order,
    so switching one op on or off never changes what another does. Order of
    ops: rotation/flip, zoom, contrast (per channel, about the tile's channel
    mean: factor in [1 - contrast, 1 + contrast]), brightness (per channel,
    added: in [-brightness, brightness]), Gaussian noise (sd `noise`). Values
    are not clipped to [0, 1]: clipping would lose what jitter moved out.
    """
    options = {**NO_AUGMENTATION, **options}
    n, height, width, channels = tiles.shape
    ops = rng.integers(0, 8, n)
    factors = 1 + options["scale"] * rng.uniform(-1, 1, n)
    gain = 1 + options["contrast"] * rng.uniform(-1, 1, (n, channels))
    shift = options["brightness"] * rng.uniform(-1, 1, (n, channels))
    if views is not None:
        ops = np.asarray(views)
    if options["dihedral"]:
        tiles = dihedral(tiles, ops if height == width else ops & 6)  # no transpose for a non-square tile
    if options["scale"]:
        tiles = zoom(tiles, factors)
    if options["contrast"] or options["brightness"]:
        # (x - mean) * gain + mean + shift, in one pass: x * gain + (mean * (1 - gain) + shift)
        means = channel_means(tiles) if options["contrast"] else 0.0
        tiles = affine(tiles, gain, means * (1 - gain) + shift)
    if options["noise"]:
        tiles += np.float32(options["noise"]) * rng.standard_normal(tiles.shape, dtype=np.float32)
    return tiles


# --- batches ---


class Batches:
    """The batches of a stream of passes over `tilesets`, each a pure function of (seed, pass, batch index).

    `labels[i]` is the class index of tilesets[i]. Pass p shuffles with (seed, p)
    when `shuffle`; `balance` draws every class about as often as the largest;
    `augment` (options as NO_AUGMENTATION; None: none) alters the tiles of
    batch b of pass p with a generator seeded by (seed, p, b). `views`, with
    dihedral augmentation: "random" draws one of the 8 views per tile and batch;
    "all" makes a pass hold every tile in each of its 8 views once, in the order
    and shuffle the stored copies of before had, so the article's recipe trains
    on exactly the batches it did when the copies were on disk.
    """

    def __init__(
        self,
        tilesets,
        labels,
        *,
        n_classes,
        batch_size,
        channels=None,
        shuffle=False,
        seed=0,
        balance=False,
        augment=None,
        views="random",
    ):
        self.tilesets, self.channels, self.batch_size = tilesets, channels, batch_size
        self.shuffle, self.seed = shuffle, seed
        augment = {**NO_AUGMENTATION, **(augment or {})}
        self.augment = augment if any(augment.values()) else None
        self.owner, self.row, self.tile_labels = tile_index(tilesets, labels)
        self.view = None
        if views == "all" and augment["dihedral"]:
            self.owner, self.row, self.tile_labels, self.view = every_view(tilesets, labels)
        self.reader = tilestore.RowReader([t.tiles for t in tilesets])
        draws = np.arange(len(self.owner))
        if balance:
            draws = np.repeat(draws, class_repeats(self.tile_labels, n_classes)[self.tile_labels])
        self.draws = draws
        self.eye = np.eye(n_classes, dtype=np.float32)
        self._orders = {}

    @property
    def tiles_per_pass(self):
        return len(self.draws)

    @property
    def per_pass(self):
        """Batches per pass (the last one may be short)."""
        return math.ceil(len(self.draws) / self.batch_size)

    def order(self, p):
        """The tiles of pass p, in the order they are drawn (kept for the few passes being made: threads making
        batches at once may each compute one, the same, and none waits for another)."""
        if not self.shuffle:
            return self.draws
        order = self._orders.get(p)
        if order is None:
            order = np.random.default_rng([self.seed, p]).permutation(self.draws)
            self._orders = {k: v for k, v in self._orders.items() if abs(k - p) < 2} | {p: order}
        return order

    def batch(self, p, b):
        """Batch b of pass p: (float32 tiles, one-hot labels)."""
        pick = self.order(p)[b * self.batch_size : (b + 1) * self.batch_size]
        tiles = gather(self.tilesets, self.owner[pick], self.row[pick], self.channels, self.reader)
        if self.augment:
            # The trailing 1 keeps this seed apart from the pass's order's: SeedSequence reads [s, p] as [s, p, 0, 0].
            views = None if self.view is None else self.view[pick]
            tiles = augment_batch(tiles, np.random.default_rng([self.seed, p, b, 1]), self.augment, views)
        return tiles, self.eye[self.tile_labels[pick]]

    def at(self, index):
        """Batch `index` of the endless stream: pass index // per_pass, batch index % per_pass."""
        return self.batch(*divmod(int(index), self.per_pass))


def batches(
    tilesets,
    labels,
    *,
    n_classes,
    batch_size,
    channels=None,
    shuffle=False,
    seed=0,
    first_pass=0,
    balance=False,
    augment=None,
):
    """A generator factory: each call yields the next pass of (tiles float32, one-hot labels) batches, from
    pass `first_pass` on; returns (factory, tiles per pass)."""
    stream = Batches(
        tilesets,
        labels,
        n_classes=n_classes,
        batch_size=batch_size,
        channels=channels,
        shuffle=shuffle,
        seed=seed,
        balance=balance,
        augment=augment,
    )
    passes = iter(range(first_pass, ENDLESS))

    def generate():
        p = next(passes)
        for b in range(stream.per_pass):
            yield stream.batch(p, b)

    return generate, stream.tiles_per_pass


def make_dataset(
    tilesets,
    labels,
    *,
    n_classes,
    tile_shape,
    batch_size,
    channels=None,
    shuffle=False,
    seed=0,
    balance=False,
    augment=None,
    endless=False,
    first_batch=0,
    workers=1,
):
    """A tf.data pipeline of (tiles, one-hot labels) batches; returns (dataset, its Batches).

    Finite (endless=False): pass 0, once per iteration (validation). Endless:
    batches first_batch, first_batch + 1, ... of the stream of passes, for
    model.fit with steps_per_epoch (Keras then carries one iterator across
    epochs).
    """
    stream = Batches(
        tilesets,
        labels,
        n_classes=n_classes,
        batch_size=batch_size,
        channels=channels,
        shuffle=shuffle,
        seed=seed,
        balance=balance,
        augment=augment,
    )
    return as_dataset(stream, tile_shape, endless=endless, first_batch=first_batch, workers=workers), stream


def as_dataset(stream, tile_shape, *, endless=False, first_batch=0, workers=1, own_threads=True):
    """The batches of `stream` (a Batches) as a tf.data pipeline.

    `workers` batches are made at once, by a deterministic parallel map over
    batch indices: they come out in order and, each being a pure function of
    its index, the same as made one by one. The batches come through `map` of
    a NumPy function rather than `Dataset.from_generator`, which halved
    training speed on 2 CPU cores (bench/train.py). `own_threads`: the pipeline runs on a pool of `workers`
    threads, not tf.data's machine-wide one.
    """
    import tensorflow as tf  # here, so the NumPy helpers above serve jobs that never load TensorFlow

    n_classes = len(stream.eye)

    def load(index):
        x, y = tf.numpy_function(stream.at, [index], (tf.float32, tf.float32), stateful=False)
        return tf.ensure_shape(x, (None, *tile_shape)), tf.ensure_shape(y, (None, n_classes))

    indices = tf.data.Dataset.range(first_batch, ENDLESS) if endless else tf.data.Dataset.range(stream.per_pass)
    data = indices.map(load, num_parallel_calls=max(1, workers), deterministic=True).prefetch(max(2, workers))
    if own_threads:
        # tf.data's own pool is as large as the machine; a job gets `workers` cores' worth (its `threads`).
        options = tf.data.Options()
        options.threading.private_threadpool_size = max(1, workers)
        options.threading.max_intra_op_parallelism = 1
        data = data.with_options(options)
    return data


def training_stream(
    tilesets,
    labels,
    *,
    n_classes,
    tile_shape,
    batch_size,
    epoch_tiles=None,
    passes=1,
    epochs_done=0,
    seed=0,
    channels=None,
    balance=False,
    augment=None,
    views="random",
    workers=1,
    own_threads=True,
):
    """The endless, shuffled training stream a run fits on: (dataset, steps per epoch, tiles per pass).

    An epoch is `passes` passes (epoch_tiles None) or `epoch_tiles` tiles of the
    stream; a run resumed after `epochs_done` epochs starts where they ended,
    so it sees the batches an uninterrupted run would have seen.
    """
    stream = Batches(
        tilesets,
        labels,
        n_classes=n_classes,
        batch_size=batch_size,
        channels=channels,
        shuffle=True,
        seed=seed,
        balance=balance,
        augment=augment,
        views=views,
    )
    steps = math.ceil(epoch_tiles / batch_size) if epoch_tiles else stream.per_pass * passes
    data = as_dataset(
        stream, tile_shape, endless=True, first_batch=epochs_done * steps, workers=workers, own_threads=own_threads
    )
    return data, steps, stream.tiles_per_pass
