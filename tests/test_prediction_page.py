"""The prediction set's findings page: one item per sentence, each number with its unit, names shown as text."""

import pandas as pd

from cellclass.predict import abstention, prediction_page

HOSTILE = "<script>alert(1)</script>&.tif"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&amp;.tif"


def test_the_page_lists_each_sentence_once_with_image_names_escaped():
    images = pd.DataFrame(
        {
            "image": [HOSTILE, "b"],
            "group": ["w1", "w1"],
            "unit": "cell",
            "tiles": [4, 4],
            "unlike_training": [3, 0],
            "uncertain": [0, 1],
            "unlike_training_images": ["", ""],
            "call": [abstention.MOSTLY_ABSTAINED, "control"],
        }
    )
    groups = pd.DataFrame({"group": ["w1"], "call": ["control"]})
    options = {**abstention.ABSTAIN_DEFAULTS, "min_probability": 0.6}
    fitted = {"temperature": 0.8, "note": "the mean was under-confident"}
    page = prediction_page.render_page(images, groups, options, [object()], fitted=fitted)
    assert "<script" not in page and page.count(ESCAPED) == 2
    assert "3 of 8 cells (37.5%) abstained as unlike the training data, 1 (12.5%) as uncertain" in page
    assert f"WARNING: 1 image(s) mostly unlike the training data: {ESCAPED}." in page
    assert (
        f"1 image(s) get no call: more than 25% of their tiles (cells) abstained (abstain.max_share): {ESCAPED}."
    ) in page
    assert "Ensemble temperature 0.80 applied" in page
    sentences = prediction_page.abstention_lines(images, options, [object()])
    sentences += prediction_page.quality_lines(images, groups, options, None)
    assert page.count("<li>") == len(sentences) + 1 and page.startswith("<html><body><h2>Predictions</h2>")
    # No reference, no tile: the page says that no call was checked against the training data, and nothing else.
    none = images.iloc[:0]
    page = prediction_page.render_page(none, groups.iloc[:0], abstention.ABSTAIN_DEFAULTS, None)
    assert page.count("<li>") == 1 and "the model carries no novelty reference" in page
