"""Personas' tastes for items: the mixture fits them from shoppers' recent items beside the features, chooses k by
held-out shoppers, and Ingest's mixtures and the stored model weigh them."""

import io

import numpy as np

from tailor.personas.clustering import ItemCounts, choose_k, fit_mixture
from tailor.personas.features import FeatureSpace
from tailor.personas.model import SIGNAL_MARK, PersonaModel, persona_evidence
from tailor.shopper import ShopperState

SPACE = FeatureSpace(("books",), {}, {"*": np.linspace(0, 100, 21)})


def shoppers_who_differ_by_items_alone(groups: int = 3, per_group: int = 40, seed: int = 0):
    """Shoppers whose features are the same noise whatever their group, each group engaging with its own items."""
    rng = np.random.default_rng(seed)
    n = groups * per_group
    z = rng.normal(0.0, 1.0, (n, 4))
    group = np.repeat(np.arange(groups), per_group)
    recent = [[f"g{g}-{j}" for j in rng.choice(10, 4, replace=False)] for g in group]
    vocabulary = sorted({item for own in recent for item in own})
    return z, group, recent, ItemCounts(recent, vocabulary)


def model_with_items(item_log: np.ndarray, taste_items: list[str]) -> PersonaModel:
    k, d = item_log.shape[0], len(SPACE.names)
    return PersonaModel(version="v1", space=SPACE, ids=list(range(k)), labels=[""] * k, weights=np.full(k, 1.0 / k),
                        means=np.zeros((k, d)), variances=np.ones((k, d)), center=np.zeros(d), scale=np.ones(d),
                        counts=np.full(k, 10.0), taste_items=taste_items, item_log=item_log)


def test_personas_that_differ_only_in_their_items_are_found_and_counted():
    z, group, _, items = shoppers_who_differ_by_items_alone()
    fit, deviance = choose_k(z, range(2, 6), items=items)
    labels = fit.responsibilities(z, items).argmax(axis=1)
    assert fit.means.shape[0] == 3 and min(deviance, key=deviance.get) == 3
    assert all(len(set(labels[group == g])) == 1 for g in range(3)) and len(set(labels)) == 3
    # The features alone cannot tell them apart.
    alone = fit_mixture(z, 3).responsibilities(z).argmax(axis=1)
    assert not all(len(set(alone[group == g])) == 1 for g in range(3))


def test_item_counts_of_some_shoppers_are_theirs_in_order():
    counts = ItemCounts([["a", "b"], [], ["c", "a"]], ["a", "b"])
    part = counts.take(np.array([0, 2]))
    log = np.log(np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]))
    assert np.allclose(part.log_likelihood(log), counts.log_likelihood(log)[[0, 2]])
    assert np.allclose(counts.log_likelihood(log)[2], log[:, 2] + log[:, 0])  # "c" is any other item


def test_a_mixture_leans_toward_the_persona_whose_items_the_shopper_engaged_with():
    model = model_with_items(np.log(np.array([[0.45, 0.45, 0.1], [0.1, 0.1, 0.8]])), ["a", "b"])
    x = np.zeros(len(SPACE.names))
    assert model.mixture(x, items=["a", "b"])["0"] > 0.5
    assert model.mixture(x, items=["z", "y"])["1"] > 0.5  # items outside the vocabulary: "any other"
    assert model.mixture(x) == model.general_mixture()


def test_the_item_term_survives_storage_and_a_model_without_one_still_loads():
    model = model_with_items(np.log(np.array([[0.7, 0.3], [0.2, 0.8]])), ["a"])
    loaded = PersonaModel.from_bytes(model.to_bytes())
    assert loaded.taste_items == ["a"] and np.allclose(loaded.item_log, model.item_log)
    assert np.allclose(loaded.item_log_likelihood(["a", "q"]), model.item_log_likelihood(["a", "q"]))
    with np.load(io.BytesIO(model.to_bytes())) as stored:
        arrays = {name: stored[name] for name in stored.files if name not in ("taste_items", "item_log")}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    older = PersonaModel.from_bytes(buffer.getvalue())  # published before the item term
    assert older.taste_items == [] and older.item_log_likelihood(["a"]).tolist() == [0.0, 0.0]


def test_a_shoppers_evidence_is_their_items_then_a_token_per_signal_that_no_item_id_can_be():
    shopper = ShopperState(user_id="u1", first_seen=0.0, last_seen=0.0, recent_items=["a", "b"],
                           referral_sources={"email": 2, "social": 99},
                           profile={"age": 34, "location": "Lyon", "interests": ["hiking"]})
    tokens = persona_evidence(shopper)
    assert tokens[:2] == ["a", "b"]
    signals = [t for t in tokens[2:]]
    assert all(t.startswith(SIGNAL_MARK) for t in signals)
    assert signals.count(f"{SIGNAL_MARK}referral:email") == 2
    assert signals.count(f"{SIGNAL_MARK}referral:social") == 30  # a source's visits count up to MAX_REFERRALS
    assert {f"{SIGNAL_MARK}age:30s", f"{SIGNAL_MARK}location:Lyon", f"{SIGNAL_MARK}interest:hiking"} <= set(signals)
    assert persona_evidence(ShopperState(user_id="u2", first_seen=0.0, last_seen=0.0)) == []


def test_a_signal_the_model_has_no_column_for_says_nothing_while_an_unknown_item_is_any_other_item():
    email = f"{SIGNAL_MARK}referral:email"
    model = model_with_items(np.log(np.array([[0.5, 0.2, 0.3], [0.1, 0.6, 0.3]])), ["a", email])
    assert np.allclose(model.item_log_likelihood(["a", email]), np.log([0.5 * 0.2, 0.1 * 0.6]))
    assert np.allclose(model.item_log_likelihood(["a", f"{SIGNAL_MARK}referral:social"]), np.log([0.5, 0.1]))
    assert np.allclose(model.item_log_likelihood(["a", "z"]), np.log([0.5 * 0.3, 0.1 * 0.3]))
    counts = ItemCounts([["a", email, f"{SIGNAL_MARK}age:20s", "z"]], ["a", email])
    assert sorted(counts.cols.tolist()) == [0, 1, 2]  # the unknown signal left out, "z" in the last column


def test_personas_that_differ_only_in_where_their_visits_come_from_are_told_apart_by_it():
    z, group, recent, _ = shoppers_who_differ_by_items_alone(groups=2)
    shared = [[f"g0-{j}" for j in range(4)] for _ in recent]  # the same items for everyone
    sources = ["email", "social"]
    shoppers = [ShopperState(user_id=f"u{i}", first_seen=0.0, last_seen=0.0, recent_items=items,
                             referral_sources={sources[g]: 3}) for i, (items, g) in enumerate(zip(shared, group))]
    evidence = [persona_evidence(s) for s in shoppers]
    items = ItemCounts(evidence, sorted({t for own in evidence for t in own}))
    labels = fit_mixture(z, 2, items=items).responsibilities(z, items).argmax(axis=1)
    assert all(len(set(labels[group == g])) == 1 for g in range(2)) and len(set(labels)) == 2
