"""The prediction set's findings page: how abstention was judged, how much abstained, and warnings.

Takes the set's image and group tables, the abstain options, the members' novelty references, the QC table and
the fitted ensemble temperature; gives sentences (each number with its unit) and the page
(templates/prediction.html) that lists them.
"""

from cellclass.predict.abstention import MOSTLY_ABSTAINED
from cellclass.prepare import qc
from cellclass.templates import render

MOSTLY = 0.5  # a set, group or image with more of its tiles (cells) unlike the training data is warned of


def abstention_lines(images, options, references):
    """What the findings say about abstention: how it was judged, how much abstained, and warnings."""
    unit = images["unit"].iloc[0] if len(images) else "tile"
    tiles = images["tiles"].sum()
    unlike, uncertain = images["unlike_training"].sum(), images["uncertain"].sum()
    lines = []
    if references is None:
        lines.append(
            "No call is checked against the training data: the model carries no novelty reference "
            "(retrain, or export the package again, to get one)."
        )
    elif options["novelty_quantile"] is None:
        lines.append("Abstention on unfamiliar images is off (abstain.novelty_quantile: null).")
    else:
        lines.append(
            f"A {unit} abstains as unlike the training data when its distance to the nearest class in the "
            "network's features exceeds what all but "
            f"{1 - options['novelty_quantile']:.0%} of the validation side's {unit}s reach."
        )
    if tiles:
        lines.append(
            f"{unlike} of {tiles} {unit}s ({unlike / tiles:.1%}) abstained as unlike the training data, "
            f"{uncertain} ({uncertain / tiles:.1%}) as uncertain"
            + (
                f" (called class below {options['min_probability']:g})."
                if options["min_probability"]
                else "; abstention on uncertainty is off (abstain.min_probability: null)."
            )
        )
        if unlike / tiles > MOSTLY:
            lines.append(
                f"WARNING: most {unit}s of this set are unlike anything the model was trained on: "
                "its calls do not apply here."
            )
    by_group = images.groupby("group")[["unlike_training", "tiles"]].sum()
    warned = [("image", images.loc[images["unlike_training"] > MOSTLY * images["tiles"], "image"])]
    if len(by_group) < len(images):  # groups (wells) of several images
        warned.append(("group", by_group.index[by_group["unlike_training"] > MOSTLY * by_group["tiles"]]))
    for kind, names in warned:
        names = [str(name) for name in names]
        if names:
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            lines.append(
                f"WARNING: {len(names)} {kind}(s) mostly unlike the training data: {', '.join(names[:10])}{more}."
            )
    return lines


def quality_lines(images, groups, options, qc_table):
    """What the findings say about images unlike the training images, and calls withheld from a minority."""
    lines = []
    if qc_table is not None and len(qc_table) and qc_table["qc_check"].iloc[0] != "compared with the training images":
        lines.append(f"Image quality was not compared: {qc_table['qc_check'].iloc[0]}.")
    moved = images[images["unlike_training_images"] != ""]
    if len(moved):
        names = "; ".join(f"{r.image} ({r.unlike_training_images})" for r in moved.head(10).itertuples())
        more = f"; and {len(moved) - 10} more" if len(moved) > 10 else ""
        fate = (
            "they get no call (abstain.image_shift)"
            if options["image_shift"]
            else "they are called all the same (abstain.image_shift: false)"
        )
        lines.append(
            f"WARNING: {len(moved)} of {len(images)} image(s) are unlike the training images in their quality "
            f"measures (more than {qc.LIMIT:g} robust spreads from the training images' median), so "
            f"{fate}: {names}{more}."
        )
    for kind, table in (("image", images), ("group", groups)):
        withheld = table[table["call"] == MOSTLY_ABSTAINED]
        if len(withheld):
            lines.append(
                f"{len(withheld)} {kind}(s) get no call: more than {options['max_share']:.0%} of their tiles "
                f"(cells) abstained (abstain.max_share): {', '.join(map(str, withheld[kind].head(10)))}"
                + (" ..." if len(withheld) > 10 else "")
                + "."
            )
    return lines


def render_page(images, groups, options, references, qc_table=None, fitted=None):
    """The findings page of a prediction set: the sentences of abstention_lines and quality_lines, and the
    ensemble temperature where one was fitted."""
    lines = abstention_lines(images, options, references) + quality_lines(images, groups, options, qc_table)
    if fitted:
        lines.append(
            f"Ensemble temperature {fitted['temperature']:.2f} applied to the members' mean probability per "
            f"tile ({fitted['note']})."
        )
    return render("prediction.html", lines=lines)
