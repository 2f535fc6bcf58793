"""Embedding benchmark: nearest items by cosine, exact (numpy, every item scored) against the inverted file index
(only the items of the lists nearest the query), at 10k, 100k and 1M items and on learned vectors; and what the
embedding candidate source adds to a feed's p50 at 100k items, the pipelines taking turns request by request.

    tailor bench embeddings [--items 10000,100000,1000000] [--dim 128] [--probes 8,16] [--queries 300]
                            [--vectors DIR/vectors.npz [DATA]]... [--price-shares 0.1,0.02]
                            [--feed-items 100000] [--feeds 300]
                            [--feed-rounds 3] [--ingest-shoppers 300] [--ingest-repeats 5]
                            [--out bench-results/embeddings.json]

Vectors are synthetic but shaped like learned ones (items around topic centres, so that an index has clusters to
find); the index is built as tailor train embeddings builds it (about sqrt(n) lists). Recall@20 is the share of the
exact top 20 the index returns. Learned vectors (`--vectors`, a file tailor train embeddings wrote, with its index)
are searched with each of the training's probes (tailor_lab.training.embeddings.PROBES) and of `--probes` on
queries folded from the
first items of the sessions of DATA (the data file they were trained on, as the feed folds a session's
items), or without it on item vectors; their row "served" says how serving searches them (ItemVectors.search).
`--price-shares` searches them again with a price bound inside the search that each share of the items pass, on
random prices (an index search widens to more lists when its filters let through fewer of its lists' items).
The feed runs the ranking pipeline on the state Ingest makes of a simulated day with
the vectors (its rows holding the session and shopper vectors Ingest keeps), the simulator's items among the vectors'
ids, without vectors, with them searched as serving searches them (ItemVectors.search) and, for comparison, searched
exactly; every request runs `--feed-rounds` times per pipeline, the pipelines taking turns. Wall percentiles pool
every run; CPU percentiles (process time) take each request's least over the rounds, what the machine's other work
disturbed least.

Ingest (`--ingest-shoppers`): its CPU per event over a simulated day (one shard, batches of 100, the memory store,
session intent as deployed) with and without session and shopper vectors, the two taking turns `--ingest-repeats`
times (the least of each is its figure: what the machine's other work added least), on item vectors trained on that
day as TrainEmbeddings would (the training's default dimensions); and the bytes the vectors add to the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tailor.embeddings import EXACT, ItemVectors, Search, VectorFilters, unit
from tailor.ranking import ConversionPrior, Pipeline, PurchaseProbability, Relevance, Request
from tailor.ranking.candidates import EmbeddingSource
from tailor.ranking.pipeline import DEFAULT_ROUTES
from tailor.ranking.scoring import CommercialPerformance
from tailor.ranking.similarity import FEED_WEIGHT, Similarity
from tailor_lab.training.embeddings import (
    PROBES,
    EmbeddingParams,
    index_search,
    interactions_from_events,
    inverted_file,
    session_queries,
    train_item_vectors,
)

from .report import frozen_heap, percentile, publish
from .state import feed_requests, ingested

__all__ = ["ingest_cost", "main", "run", "synthetic_vectors"]

BUDGET_MS = 2.0  # what the embedding source may add to a feed's p50 at 100k items
INGEST_BUDGET = 0.15  # how much more CPU per event Ingest may spend with vectors on
K = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench embeddings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="10000,100000,1000000", help="catalog sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--probes", default="8,16", help="lists the index searches, comma-separated")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--vectors", type=Path, nargs="+", action="append", default=[], metavar="FILE [DATA]",
                        help="learned vectors (tailor train embeddings --out DIR writes DIR/vectors.npz) and the data "
                             "file they were trained on, whose sessions the queries are folded from (without it: item "
                             "vectors as queries); repeatable")
    parser.add_argument("--price-shares", default="",
                        help="for --vectors: the search again with a price bound passing each share of the items, "
                             "comma-separated (e.g. 0.1,0.02)")
    parser.add_argument("--feed-items", type=int, default=100_000, help="vectors behind the feed (0: no feed run)")
    parser.add_argument("--feeds", type=int, default=300, help="feed requests per pipeline")
    parser.add_argument("--feed-rounds", type=int, default=3, help="times each feed request is run per pipeline")
    parser.add_argument("--ingest-shoppers", type=int, default=300, help="simulated shoppers (0: no Ingest run)")
    parser.add_argument("--ingest-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/embeddings.json"))
    args = parser.parse_args(argv)
    if any(len(given) > 2 for given in args.vectors):
        parser.error("--vectors: a vectors file and at most one data file")
    # One BLAS thread, as a Lambda function's vCPU runs it: a second thread only contends on a loaded machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    probes = [int(p) for p in args.probes.split(",") if p]
    report = run([int(n) for n in args.items.split(",") if n], dim=args.dim, probes=probes, queries=args.queries,
                 feed_items=args.feed_items, feeds=args.feeds, seed=args.seed, feed_rounds=args.feed_rounds)
    shares = tuple(float(share) for share in args.price_shares.split(",") if share)
    report["learned"] = [learned_search(given[0], given[1] if len(given) > 1 else None, args.queries, args.seed,
                                        shares, tuple(probes)) for given in args.vectors]
    if args.ingest_shoppers:
        report["ingest"] = ingest_cost(args.ingest_shoppers, args.ingest_repeats, args.seed)
    publish(report, format_table(report), args.out)
    return 0


def run(sizes: list[int], *, dim: int, probes: list[int], queries: int, feed_items: int, feeds: int,
        seed: int, feed_rounds: int = 3) -> dict[str, Any]:
    rows = []
    for n in sizes:
        vectors = synthetic_vectors([f"i{k}" for k in range(n)], dim, seed)
        rng = np.random.default_rng(seed + 1)
        asked = unit(vectors.vectors[rng.integers(0, n, queries)] + 0.3 * unit(
            rng.standard_normal((queries, dim)).astype(np.float32)))
        rows += _searches(vectors, asked, probes, vectors.metadata["index_seconds"])
        del vectors
    return {"dim": dim, "k": K, "queries": queries, "search": rows,
            "feed": _feed(feed_items, dim, feeds, feed_rounds, seed) if feed_items else None,
            "budget_ms": BUDGET_MS}


def learned_search(path: Path, sessions: Path | None, queries: int, seed: int,
                   price_shares: tuple[float, ...] = (), probes: tuple[int, ...] = ()) -> dict[str, Any]:
    """Exact search against the index at each of the training's probes on learned vectors (see the module doc);
    again for each of `price_shares` with a price bound that share of the items pass (on random prices)."""
    vectors = ItemVectors.from_npz(path.read_bytes()).by_list()  # as serving loads them
    probes = tuple(sorted({*PROBES, *probes}))
    if vectors.centroids is None:
        raise ValueError(f"--vectors {path}: the file holds no index")
    if sessions is not None:
        from tailor_lab.datasets import load_diginetica, load_yoochoose

        with open(sessions, encoding="utf-8") as fh:
            header = fh.readline()
        events = load_diginetica(sessions) if ";" in header else load_yoochoose(sessions)
        asked = session_queries(vectors, interactions_from_events(events), queries, seed)
    else:
        known = np.flatnonzero(np.linalg.norm(vectors.vectors, axis=1) > 0)
        asked = vectors.vectors[np.random.default_rng(seed).choice(known, min(queries, len(known)), replace=False)]
    if not len(asked):
        raise ValueError(f"--vectors {path}: no query: " + (f"no session of {sessions} has an item of these vectors"
                                                            if sessions is not None else "every vector is zero"))
    found = {"vectors": str(path), "queries_from": "sessions" if sessions is not None else "items",
             "sessions": None if sessions is None else str(sessions), "queries": len(asked),
             "lists": len(vectors.centroids), "served": str(vectors.search),
             "trained_probes": vectors.metadata.get("probes"), "search": _searches(vectors, asked, probes, 0.0),
             "price_filtered": {}}
    vectors.price = np.random.default_rng(seed).uniform(0.0, 100.0, len(vectors)).astype(np.float32)
    for share in price_shares:
        found["price_filtered"][str(share)] = _searches(vectors, asked, probes, 0.0,
                                                        VectorFilters(max_price=100.0 * share))
    return found


def ingest_cost(shoppers: int, repeats: int, seed: int) -> dict[str, Any]:
    """Ingest's CPU per event with and without session and shopper vectors, and their bytes (see the module doc)."""
    from tailor.embeddings.online import OnlineVectors
    from tailor.ingest.intent import SessionIntent
    from tailor.ingest.service import Ingestor, StreamRecord
    from tailor.store.memory import MemoryBlobStore, MemoryStateStore
    from tailor_lab.simulator import simulate

    events = sorted(simulate(shoppers=shoppers, days=1.0, seed=seed).events, key=lambda e: e["timestamp"])
    vectors = train_item_vectors(interactions_from_events(events), EmbeddingParams(), index=False)
    intent = SessionIntent.shipped()
    records = [StreamRecord("shardId-000000000000", str(49_000_000_000_000_000_000 + n), json.dumps(e).encode(),
                            e["user_id"], 1_800_000_000.0 + n) for n, e in enumerate(events)]
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    sizes: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for name in cpu:
            store = MemoryStateStore()
            ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1, intent=intent,
                                vectors=OnlineVectors(lambda: vectors) if name == "on" else None)
            with frozen_heap():
                started = time.process_time()
                for start in range(0, len(records), 100):
                    if ingestor.ingest(records[start:start + 100]).failed:
                        raise RuntimeError("ingest failed in the benchmark")
                cpu[name].append((time.process_time() - started) / len(records) * 1e6)
            if name == "on" and not sizes:
                for table, rows in store.snapshot().items():
                    if table in ("sessions", "shoppers"):
                        kept = [row["vector"] for row in rows.values() if row.get("vector")]
                        sizes[table] = {"rows": len(kept), "vector_bytes_mean": round(statistics.fmean(
                            sum(len(str(k)) + len(str(v)) for k, v in held.items()) for held in kept), 1)}
    off, on = min(cpu["off"]), min(cpu["on"])
    return {"events": len(records), "item_vectors": len(vectors), "dim": vectors.dim, "repeats": repeats,
            "us_per_event": {"off": round(off, 1), "on": round(on, 1)},
            "runs_us_per_event": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
            "growth": round(on / off - 1, 4), "budget": INGEST_BUDGET, "rows": sizes}


def synthetic_vectors(ids: list[str], dim: int, seed: int) -> ItemVectors:
    """Unit vectors around sqrt(n) topic centres, random prices and availability, and their index, laid out list
    by list."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    topics = unit(rng.standard_normal((max(1, int(math.sqrt(n))), dim)).astype(np.float32))
    matrix = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        # An item's cosine with its topic's centre is about 0.7, as with an item and its nearest neighbours in
        # learned vectors; topics overlap, so the index's lists do not match them exactly.
        matrix[start:stop] = topics[rng.integers(0, len(topics), stop - start)] + unit(
            rng.standard_normal((stop - start, dim)).astype(np.float32))
    vectors = ItemVectors(list(ids), unit(matrix), np.full(n, -1, dtype=np.int32), [],
                          rng.uniform(5, 500, n).astype(np.float32), (rng.random(n) > 0.05).astype(np.float32),
                          np.zeros(n, dtype=bool))
    t = time.perf_counter()
    vectors.centroids, vectors.list_offsets, vectors.list_items = inverted_file(vectors.vectors, len(topics), seed)
    vectors.metadata["index_seconds"] = round(time.perf_counter() - t, 1)
    return vectors.by_list()  # as serving loads them (ItemVectors.from_stored)


def format_table(report: dict[str, Any]) -> str:
    header = f"{'items':>9} {'search':>6} {'probes':>6} {'p50 ms':>8} {'p99 ms':>8} {'recall@20':>9} {'index s':>8}"
    lines = [f"nearest {report['k']} of n items by cosine, d={report['dim']}, {report['queries']} queries, "
             "availability filter inside the search", header]
    lines += [_search_line(r) for r in report["search"]]
    for learned in report.get("learned") or ():
        first = learned["search"][0]
        lines += [f"\nlearned vectors {learned['vectors']}: {first['items']} items, d={first['dim']}, "
                  f"{learned['lists']} lists; {learned['queries']} queries from "
                  + (f"the sessions of {learned['sessions']}" if learned["sessions"] else "item vectors")
                  + f"; served: {learned['served']} (trained probes {learned['trained_probes'] or '-'})", header]
        lines += [_search_line(r) for r in learned["search"]]
        for share, rows in learned.get("price_filtered", {}).items():
            lines += [f"  with a price bound {float(share):.0%} of the items pass (random prices):"]
            lines += [_search_line(r) for r in rows]
    feed = report.get("feed")
    if feed:
        plain = feed["pipelines"]["without vectors"]
        lines.append(f"\nfeed at {feed['items']} item vectors ({feed['requests']} requests per pipeline, taking turns, "
                     f"{feed.get('rounds', 1)} rounds; CPU: each request's least over the rounds; "
                     f"budget +{report['budget_ms']:.0f} ms on the p50):")
        if feed.get("index_recall"):
            lines.append(f"  served: {feed['served']}, the fewest probes keeping recall@{report['k']} on queries folded "
                         "from the simulated sessions at the target (" + ", ".join(
                             f"{p} probes {r:.3f}" for p, r in feed["index_recall"].items()) + ")")
        for name, m in feed["pipelines"].items():
            verdict = ""
            if name != "without vectors":
                added, added_cpu = m["p50_ms"] - plain["p50_ms"], m["cpu_p50_ms"] - plain["cpu_p50_ms"]
                verdict = (f"  added: wall +{added:.2f} ms, CPU +{added_cpu:.2f} ms: "
                           f"{'met' if max(added, added_cpu) <= report['budget_ms'] else 'MISSED'}")
            own = feed["source_p50_ms"].get(name)
            lines.append(f"  {name:24s} wall p50 {m['p50_ms']:6.2f} p99 {m['p99_ms']:6.2f} ms  CPU p50 "
                         f"{m['cpu_p50_ms']:6.2f} p99 {m['cpu_p99_ms']:6.2f} ms  embedding candidates "
                         f"{m['embedding_share']:.0%}" + (f"  source alone p50 {own:.2f} ms" if own is not None else "")
                         + verdict)
    ingest = report.get("ingest")
    if ingest:
        growth = ingest["growth"]
        lines.append(f"\nIngest CPU per event, {ingest['events']} events, {ingest['item_vectors']} item vectors of "
                     f"d={ingest['dim']}, least of {ingest['repeats']}: without vectors "
                     f"{ingest['us_per_event']['off']:.1f} us, with {ingest['us_per_event']['on']:.1f} us "
                     f"({growth:+.1%}; budget +{ingest['budget']:.0%}: {'met' if growth <= ingest['budget'] else 'MISSED'})")
        for table, size in ingest["rows"].items():
            lines.append(f"  {table}: {size['rows']} rows with a vector, {size['vector_bytes_mean']:.0f} bytes each "
                         "(field names and values as DynamoDB stores them)")
    return "\n".join(lines)


def _searches(vectors: ItemVectors, asked: np.ndarray, probes: list[int] | tuple[int, ...], index_seconds: float,
              filters: VectorFilters = VectorFilters()) -> list[dict[str, Any]]:
    """Exact search and the index at each of `probes` for every query: each one's times and recall@K."""
    n, dim = len(vectors), vectors.dim
    exact, times = [], []
    for q in asked:
        t = time.perf_counter()
        exact.append({item for item, _ in vectors.nearest(q, K, filters)})
        times.append((time.perf_counter() - t) * 1000)
    rows = [_row(n, dim, "exact", None, times, 1.0, 0.0)]
    for p in probes:
        found, times = [], []
        for q in asked:
            t = time.perf_counter()
            found.append({item for item, _ in vectors.nearest(q, K, filters, probes=p)})
            times.append((time.perf_counter() - t) * 1000)
        recall = statistics.fmean(len(a & b) / max(1, len(b)) for a, b in zip(found, exact))
        rows.append(_row(n, dim, "index", p, times, recall, index_seconds))
    return rows


def _search_line(r: dict[str, Any]) -> str:
    return (f"{r['items']:>9} {r['search']:>6} {r['probes'] or '-':>6} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['recall']:>9.3f} {r['index_seconds']:>8.1f}")


def _row(n: int, dim: int, search: str, probes: int | None, times: list[float], recall: float,
         index_seconds: float) -> dict[str, Any]:
    return {"items": n, "dim": dim, "search": search, "probes": probes, "p50_ms": round(percentile(times, 50), 3),
            "p99_ms": round(percentile(times, 99), 3), "recall": round(recall, 4), "index_seconds": index_seconds}


def _feed(n: int, dim: int, feeds: int, rounds: int, seed: int) -> dict[str, Any]:
    from tailor_lab.simulator import simulate

    events = simulate(shoppers=150, days=1, seed=seed).events
    catalog = sorted(ingested(events).tables["items"])
    fillers = [f"filler-{k}" for k in range(max(0, n - len(catalog)))]
    vectors = synthetic_vectors(catalog + fillers, dim, seed)
    # The probes serving takes, as the training measures them: on queries folded from the simulated sessions.
    vectors.metadata.update(index_search(vectors, interactions_from_events(events), seed))
    state = ingested(events, vectors)  # the rows hold the session and shopper vectors Ingest keeps
    last = max(row.get("last_event_at", 0) or 0 for row in state.tables["items"].values())
    for k, item in enumerate(fillers):  # a shop of n items has n items rows
        state.tables["items"][item] = {"item_id": item, "category": f"filler-{k % 50}", "price": 10.0 + k % 400,
                                       "available": True, "views": 1 + k % 7, "last_event_at": last}
    requests = feed_requests(state, feeds, seed)
    now = max(row.get("last_seen", 0) for row in state.tables["shoppers"].values())
    # As served: the search serving's rule picks for these vectors; exact search beside it, for comparison.
    served = f"as served ({vectors.search})"
    searched: dict[str, Search | None] = {served: None, **({"exact": EXACT} if vectors.search != EXACT else {})}
    pipelines = {"without vectors": _pipeline(state, None, None),
                 **{name: _pipeline(state, vectors, search) for name, search in searched.items()}}
    walls: dict[str, list[float]] = {name: [] for name in pipelines}
    cpu: dict[str, list[list[float]]] = {name: [[] for _ in requests] for name in pipelines}
    share: dict[str, list[float]] = {name: [] for name in pipelines}
    for pipeline in pipelines.values():  # warm every cache once before timing
        for user, session in requests[:20]:
            pipeline.rank(pipeline.gather(Request("feed", user_id=user, session_id=session), now))
    searches: dict[str, list[float]] = {name: [] for name in searched}
    # Exact search reads every vector (51 MB at 100k): it runs apart, or the pipeline after it would start cold.
    groups = [[name for name in pipelines if name != "exact"], ["exact"]]
    for turn, group in ((turn, group) for turn in range(rounds) for group in groups):
        for k, (user, session) in enumerate(requests):
            for name in group:
                pipeline = pipelines[name]
                t, c = time.perf_counter(), time.process_time()
                gathered = pipeline.gather(Request("feed", user_id=user, session_id=session), now)
                ranked = pipeline.rank(gathered)
                cpu[name][k].append((time.process_time() - c) * 1000)
                walls[name].append((time.perf_counter() - t) * 1000)
                if turn:
                    continue
                share[name].append(sum("embedding" in r.sources for r in ranked) / max(1, len(ranked)))
                if name in searches:  # the source's own work for this request: its query vector and its search
                    source = EmbeddingSource(vectors=lambda: vectors, search=searched[name])
                    t = time.perf_counter()
                    source.propose(gathered.ctx, pipeline.max_candidates)
                    searches[name].append((time.perf_counter() - t) * 1000)
    # CPU: each request's least over the rounds (what the machine's other work added least), then its percentiles.
    least = {name: [min(times) for times in per_request] for name, per_request in cpu.items()}
    return {"items": n, "requests": len(requests), "rounds": rounds, "served": str(vectors.search),
            "index_recall": vectors.metadata.get("index_recall"),
            "source_p50_ms": {name: round(percentile(t, 50), 3) for name, t in searches.items()},
            "pipelines": {name: {"p50_ms": round(percentile(t, 50), 3), "p99_ms": round(percentile(t, 99), 3),
                                 "cpu_p50_ms": round(percentile(least[name], 50), 3),
                                 "cpu_p99_ms": round(percentile(least[name], 99), 3),
                                 "embedding_share": round(statistics.fmean(share[name]), 3)}
                          for name, t in walls.items()}}


def _pipeline(state: Any, vectors: ItemVectors | None, search: Search | None) -> Pipeline:
    feed = DEFAULT_ROUTES["feed"]
    sources = tuple(EmbeddingSource(vectors=lambda: vectors, search=search) if s.name == "embedding" else s
                    for s in feed.sources)
    scorers = [CommercialPerformance(), PurchaseProbability(ConversionPrior()), Relevance()]
    weights = dict(feed.weights)
    if vectors is not None:  # as the Recommender serves a feed with vectors: their cosine weighed in the blend
        scorers.append(Similarity(lambda: vectors))
        weights["similarity"] = FEED_WEIGHT
    routes = {**DEFAULT_ROUTES, "feed": type(feed)(sources, weights, feed.fallback)}
    return Pipeline(state, scorers, routes=routes)
