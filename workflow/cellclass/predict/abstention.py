"""Why a tile (cell), image or group gets no call, in the words every table and page uses.

Takes per-tile mean probabilities and novelty, and image or group tables with their counts of abstained tiles;
gives each tile's reason to abstain (unlike the training data, uncertain), each row's abstained share, and
`no_call`: why an image or group has no call (its tiles abstained, it is unlike the training images, or most
of its tiles abstained, above abstain.max_share).
"""

import numpy as np

from cellclass.predict import image_shift

UNLIKE = "abstain (unlike training data)"
UNCERTAIN = "abstain (uncertain)"
MOSTLY_ABSTAINED = "abstain (most tiles abstained)"
# predict.<set>.abstain as the schema defaults it.
ABSTAIN_DEFAULTS = {"novelty_quantile": 0.99, "min_probability": None, "max_share": 0.25, "image_shift": True}


def abstentions(mean, novelty, options):
    """Per tile, why no call is made ('' where one is): its ensemble novelty (members' mean, in units of the
    threshold; None where the runs carry no reference) above 1, or its called class's mean probability below
    `min_probability`. Unlike the training data wins: an unfamiliar tile's confidence means nothing."""
    reasons = np.full(len(mean), "", dtype=object)
    if options["min_probability"] is not None:
        reasons[mean.max(axis=1, initial=0) < options["min_probability"]] = UNCERTAIN
    if novelty is not None and options["novelty_quantile"] is not None:
        reasons[novelty > 1] = UNLIKE
    return reasons


def abstained_share(table):
    """Per row of an image or group table: the share of its tiles (cells) that abstained, for any reason; NaN
    where it has none."""
    abstained = table["unlike_training"] + table["uncertain"] + table["image_shift"]
    return abstained / table["tiles"].where(table["tiles"] > 0)


def why_no_call(table, classes, options):
    """An image or group table with `no_call`: why it has no call, in words ('' where it has one)."""
    share = table["abstained_share"].fillna(0)
    reasons = []
    for call, moved, fraction in zip(table["call"], table.get("unlike_training_images", [""] * len(table)), share):
        if call == image_shift.SHIFTED:
            reasons.append(f"unlike the training images: {moved}")
        elif call == MOSTLY_ABSTAINED:
            reasons.append(
                f"{fraction:.0%} of its tiles (cells) abstained, above abstain.max_share "
                f"{options['max_share']:g}: the rest do not describe it"
            )
        else:
            reasons.append("" if call in classes else str(call))
    return table.assign(no_call=reasons)
