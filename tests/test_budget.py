"""A run's budget turned into epochs (cellclass.learn.budget), checked by the config and stated in the plan."""

import pytest

from cellclass.config import validate
from cellclass.io.errors import InputError
from cellclass.learn import budget, recipe
from cellclass.plan import Plan

DATASETS = {"d": {"demo": {"pattern": "aggregates", "fields_per_class": 3}}}


def settings(**train):
    return validate({"train": train, "datasets": DATASETS})["experiments"]["d"]["train"]


def test_a_budget_in_passes_is_cut_into_an_epoch_a_pass_within_10_to_30():
    assert budget.resolve(settings(budget={"passes": 20}), 500) == {
        "epochs": 20,
        "epoch_tiles": 500,
        "epoch_passes": None,
        "tile_steps": 10_000,
        "passes": 20.0,
        "set_by": "budget (passes)",
    }
    few = budget.resolve(settings(budget={"passes": 2}), 500)
    assert few["epochs"] == budget.MIN_EPOCHS and few["tile_steps"] == 1000 and few["epoch_tiles"] == 100
    many = budget.resolve(settings(budget={"passes": 90}), 500)
    assert many["epochs"] == budget.MAX_EPOCHS and many["tile_steps"] == 45_000 and many["passes"] == 90


def test_the_smallest_limit_holds():
    """The default: 30 passes, but at most 100,000 tile-steps, so a large set costs what a mid-sized one does."""
    small, large = (budget.resolve(settings(), n) for n in (1000, 20_000))
    assert small["tile_steps"] == 30_000 and small["set_by"] == "budget (passes)"
    assert large["tile_steps"] == 100_000 and large["set_by"] == "budget (tile-steps)"
    assert large["epochs"] == budget.MIN_EPOCHS and large["passes"] == 5


def test_minutes_become_tile_steps_from_the_measured_rate_after_scoring():
    options = settings(budget={"minutes": 2})
    plain = budget.resolve(options, 1000, tiles_per_second=50.0)
    assert plain["tile_steps"] == 6000 and plain["set_by"] == "budget (minutes)"
    # 10 epochs' scoring at 3 s each leaves 90 of the 120 seconds for training steps.
    scored = budget.resolve(options, 1000, tiles_per_second=50.0, fixed_cost=3.0)
    assert scored["tile_steps"] == 4500 and scored["epochs"] == 10


def test_explicit_epochs_and_epoch_lengths_override_the_budget():
    assert budget.resolve(settings(epochs=4), 500)["epoch_tiles"] == 30 * 500 // 4
    by_length = budget.resolve(settings(epoch_passes=3), 500)
    assert by_length["epoch_passes"] == 3 and by_length["epochs"] == 10
    both = budget.resolve(settings(epochs=4, epoch_tiles=400), 500)
    assert both["tile_steps"] == 1600 and both["set_by"].startswith("epochs x epoch length")


def test_the_article_recipe_trains_as_it_always_did():
    work = budget.resolve(settings(recipe="article"), 500)
    assert work["epochs"] == 9 and work["epoch_passes"] == 1 and work["set_by"] == "epochs"


def test_a_budget_smaller_than_a_batch_is_refused():
    with pytest.raises(ValueError, match="less than one batch"):
        budget.resolve(settings(budget={"passes": 0.01}, batch_size=20), 500)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"passes": 0}, "budget.passes: 0 is less than or equal to the minimum of 0"),
        ({"passes": -2}, "budget.passes: -2 is less than or equal to the minimum of 0"),
        ({"minutes": 0}, "budget.minutes: 0 is less than or equal to the minimum of 0"),
        ({"tile_steps": 10}, "budget.tile_steps: 10 is less than one batch (batch_size 20)"),
        ({}, "budget: {} should be non-empty"),
        ({"hours": 1}, "'hours' was unexpected"),
    ],
)
def test_bad_budgets_are_config_errors(given, message):
    with pytest.raises(InputError, match="invalid configuration") as error:
        settings(budget=given, batch_size=20)
    assert message in str(error.value)


def test_no_budget_needs_epochs():
    with pytest.raises(InputError, match="budget: null with no epochs"):
        settings(budget=None)
    assert settings(budget=None, epochs=5)["epochs"] == 5


def test_the_plan_states_each_experiments_work():
    config = validate(
        {
            "train": {"models": ["deep", "small"], "runs": 2},
            "datasets": DATASETS,
            "experiments": {
                "d": {"dataset": "d"},
                "e": {"dataset": "d", "train": {"budget": {"minutes": 5}}},
                "f": {"dataset": "d", "train": {"epochs": 3, "epoch_tiles": 400}},
            },
        }
    )
    d, e, f = Plan(config).training_work()
    assert d.startswith("d: 4 run(s) (deep, small x 1 fold(s) x 2 seed(s)), each on ")
    assert d.endswith(
        "each run trains 30 passes over the training tiles, at most 100,000 tile-steps, cut into 10-30 epochs"
    )
    assert e.endswith("each run trains 5 minutes, cut into 10-30 epochs")
    assert f.endswith("each run trains 3 epochs of 400 tiles")


def test_describe():
    assert recipe.budget_words(None) == "no budget"
    assert recipe.budget_words({"minutes": 20, "passes": 8}) == "8 passes over the training tiles, at most 20 minutes"
