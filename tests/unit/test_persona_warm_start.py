"""A rebuild starts from the previous personas as well as afresh: the previous model's responsibilities on today's
shoppers, and the same with each persona split in turn or its two closest merged, are starts for k0, k0 + 1, k0 - 1."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import tailor.personas.rebuild as rebuild
from tailor.personas.clustering import best_fit, fit_mixture, starts_near
from tailor.personas.rebuild import run_job

from tests.unit.test_persona_k_choice import _ingested


def three_groups(per_group: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    group = np.repeat(np.arange(3), per_group)
    return centres[group] + rng.normal(0.0, 0.5, (len(group), 2)), group


def test_the_previous_personas_split_where_two_groups_shared_one():
    z, group = three_groups()
    merged = np.eye(2)[np.minimum(group, 1)]  # groups 1 and 2 were one persona
    splits = starts_near(merged, z, 3)
    assert len(splits) == 2 and all(s.shape == (len(z), 3) and np.allclose(s.sum(axis=1), 1.0) for s in splits)
    split = splits[1]  # the persona of groups 1 and 2 split; the other persona stays as it was
    assert np.allclose(split[:, 0], merged[:, 0])
    assert adjusted_rand_score(group, split.argmax(axis=1)) == 1.0  # split across the groups' direction
    assert adjusted_rand_score(group, splits[0].argmax(axis=1)) < 1.0  # the other split cuts group 0 in two
    fit = fit_mixture(z, 3, start=split)
    assert adjusted_rand_score(group, fit.responsibilities(z).argmax(axis=1)) == 1.0


def test_the_previous_personas_merge_where_one_group_was_two():
    z, group = three_groups()
    halves = np.where((group == 0) & (z[:, 0] > 0), 3, group)  # group 0 was split across two personas
    (merged,) = starts_near(np.eye(4)[halves], z, 3)
    assert merged.shape == (len(z), 3) and np.allclose(merged.sum(axis=1), 1.0)
    assert adjusted_rand_score(group, merged.argmax(axis=1)) == 1.0


@pytest.mark.parametrize(("k0", "k"), [(4, 6), (4, 2), (2, 1)])
def test_no_start_for_a_k_two_or_more_away_or_below_two_personas(k0, k):
    z, _ = three_groups()
    assert starts_near(np.full((len(z), k0), 1.0 / k0), z, k) == []
    assert starts_near(None, z, k) == []


def test_the_best_fit_keeps_the_previous_personas_when_fresh_starts_explain_the_shoppers_worse(monkeypatch):
    import tailor.personas.clustering as clustering

    monkeypatch.setattr(clustering, "STARTS", 1)
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(8), 15)
    z = rng.normal(0.0, 3.0, (8, 3))[group] + rng.normal(0.0, 0.5, (len(group), 3))
    truth = np.eye(8)[group]
    fresh, warm = best_fit(z, 8), best_fit(z, 8, starts=starts_near(truth, z, 8))
    assert warm.loglik > fresh.loglik + 10 and warm.loglik == fit_mixture(z, 8, start=truth).loglik
    assert adjusted_rand_score(group, warm.responsibilities(z).argmax(axis=1)) > \
        adjusted_rand_score(group, fresh.responsibilities(z).argmax(axis=1))


def test_a_rebuild_passes_the_previous_models_responsibilities_of_its_shoppers(monkeypatch):
    store, blobs, _ = _ingested(60)
    starts = []
    choose = rebuild.choose_k

    def spy(z, ks, **kwargs):
        starts.append(kwargs.get("start"))
        return choose(z, ks, **kwargs)

    monkeypatch.setattr(rebuild, "choose_k", spy)
    first = run_job("rebuild", store, blobs, ks=range(2, 6))
    second = run_job("rebuild", store, blobs, ks=range(2, 6))
    assert starts[0] is None and starts[1].shape[1] == first["k"] and np.allclose(starts[1].sum(axis=1), 1.0)
    assert second["k"] == first["k"] and second["ids"] == first["ids"]

