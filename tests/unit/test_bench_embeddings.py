"""The embedding benchmark on learned vectors: exact search against the index at each of the training's probes, on
queries folded from the sessions the vectors were trained on, or on item vectors."""

import pytest

from tailor_lab.bench.embeddings import format_table, learned_search
from tailor_lab.training.embeddings import PROBES, EmbeddingParams, interactions_from_sessions, train_item_vectors

WORLDS = [[f"{kind}-{(k + j) % 4}" for j in range(3)] for k in range(40) for kind in ("lamp", "book", "rug")]


def test_learned_vectors_report_each_probes_recall_and_how_serving_searches_them(tmp_path):
    vectors = train_item_vectors(interactions_from_sessions(WORLDS), EmbeddingParams(dim=4, window=2, min_learned=1,
                                                                                     index_lists=3))
    (tmp_path / "vectors.npz").write_bytes(vectors.to_npz())
    data = tmp_path / "train.txt"
    data.write_text("SessionId\tItemId\tTime\n" + "".join(
        f"{s}\t{item}\t{1000 * s + j}\n" for s, items in enumerate(WORLDS) for j, item in enumerate(items)))
    for sessions, queries_from in ((data, "sessions"), (None, "items")):
        found = learned_search(tmp_path / "vectors.npz", sessions, 10, 7, (0.5,))
        assert found["queries_from"] == queries_from and found["queries"] == 10 and found["lists"] == 3
        assert found["served"] == "exact"  # twelve items: exact search costs what the index does
        for rows in (found["search"], found["price_filtered"]["0.5"]):
            assert [(r["search"], r["probes"]) for r in rows] == [("exact", None)] + [("index", p) for p in PROBES]
            assert all(r["recall"] == 1.0 for r in rows)  # four probes search all three lists
    table = format_table({"k": 20, "dim": 4, "queries": 10, "search": [], "learned": [found]})
    assert "12 items, d=4, 3 lists; 10 queries from item vectors; served: exact (trained probes 4)" in table
    assert "with a price bound 50% of the items pass" in table


def test_a_vectors_file_without_an_index_is_refused_by_name(tmp_path):
    vectors = train_item_vectors(interactions_from_sessions(WORLDS), EmbeddingParams(dim=4, window=2, min_learned=1),
                                 index=False)
    (tmp_path / "vectors.npz").write_bytes(vectors.to_npz())
    with pytest.raises(ValueError, match="holds no index"):
        learned_search(tmp_path / "vectors.npz", None, 10, 7)
