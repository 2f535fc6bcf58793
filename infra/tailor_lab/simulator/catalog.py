"""The simulated shop's catalog: its categories and their neighbours, seeded items with a latent quality and style,
listings best-sellers first, and search."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .parameters import DEFAULT_PARAMETERS, Parameters

__all__ = ["CATEGORIES", "CATEGORY_NAMES", "NEIGHBOURS", "Catalog", "Category"]


@dataclass(frozen=True)
class Category:
    """A catalog category: its brands, the kinds of product it sells, and its price distribution."""

    name: str
    brands: tuple[str, ...]
    kinds: tuple[str, ...]
    median_price: float
    price_sigma: float  # of log price: the long tail of expensive items
    refinements: tuple[str, ...]  # words shoppers add to a query to narrow it


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", ("voltix", "sonora", "lumina", "kestrel"),
             ("headphones", "speaker", "camera", "tv", "soundbar"), 120.0, 0.9,
             ("wireless", "4k", "bluetooth", "noise cancelling")),
    Category("computers", ("vertex", "nimbus", "arcon", "qubit"),
             ("laptop", "monitor", "keyboard", "mouse", "ssd"), 380.0, 0.9,
             ("gaming", "16gb", "ultrawide", "mechanical")),
    Category("phones", ("pulse", "orbit", "zephyr"),
             ("phone", "case", "charger", "earbuds", "smartwatch"), 160.0, 1.0,
             ("5g", "fast charging", "unlocked", "128gb")),
    Category("home_decor", ("hearth", "linden", "atelier-nord", "mossgrove"),
             ("lamp", "rug", "vase", "cushion", "mirror", "wall art"), 45.0, 0.8,
             ("boho", "minimalist", "velvet", "handmade")),
    Category("kitchen", ("copperline", "brava", "mise"),
             ("pan", "knife", "blender", "kettle", "coffee maker"), 38.0, 0.9,
             ("nonstick", "stainless", "cast iron", "electric")),
    Category("furniture", ("oakwell", "modulo", "fjell"),
             ("sofa", "chair", "desk", "bookshelf", "bed frame"), 290.0, 0.7,
             ("oak", "modular", "ergonomic", "storage")),
    Category("outdoor", ("ridgeline", "trailhead", "alpenglow"),
             ("tent", "backpack", "hiking boots", "rain jacket", "sleeping bag"), 85.0, 0.9,
             ("waterproof", "ultralight", "4 season", "insulated")),
    Category("sports", ("stride", "apex", "kinetic"),
             ("running shoes", "yoga mat", "dumbbells", "bike helmet", "tennis racket"), 55.0, 0.8,
             ("adjustable", "lightweight", "pro", "breathable")),
    Category("fashion", ("marlowe", "indigo-lane", "basics-co", "saltwater"),
             ("shirt", "dress", "jeans", "sneakers", "coat"), 42.0, 0.7,
             ("slim fit", "linen", "organic cotton", "oversized")),
    Category("luxury_accessories", ("maison-verre", "aurelia", "castellan"),
             ("watch", "handbag", "sunglasses", "wallet", "silk scarf"), 650.0, 0.8,
             ("gold", "leather", "limited edition", "swiss")),
    Category("books", ("penrose-press", "northwind", "quill"),
             ("novel", "cookbook", "biography", "travel guide", "graphic novel"), 16.0, 0.5,
             ("hardcover", "bestseller", "signed", "paperback")),
    Category("toys_gifts", ("jubilee", "kindred", "popwell"),
             ("puzzle", "board game", "gift set", "plush toy", "building blocks"), 28.0, 0.7,
             ("for kids", "for her", "for him", "personalized")),
)


CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)

# Where a wandering interest goes next: categories shoppers move between within a session.
_NEIGHBOUR_NAMES = {
    "electronics": ("computers", "phones"), "computers": ("electronics", "phones"),
    "phones": ("electronics", "computers"), "home_decor": ("kitchen", "furniture"),
    "kitchen": ("home_decor", "furniture"), "furniture": ("home_decor", "kitchen"),
    "outdoor": ("sports", "fashion"), "sports": ("outdoor", "fashion"),
    "fashion": ("luxury_accessories", "sports"), "luxury_accessories": ("fashion", "home_decor"),
    "books": ("toys_gifts", "home_decor"), "toys_gifts": ("books", "kitchen"),
}
NEIGHBOURS: tuple[tuple[int, ...], ...] = tuple(tuple(CATEGORY_NAMES.index(n) for n in _NEIGHBOUR_NAMES[name])
                                                 for name in CATEGORY_NAMES)


class Catalog:
    """Items drawn from `rng`, spread evenly over the categories, in columns by item index (the simulation's inner
    loops read them) and as numpy arrays (the choice model's), with each category's items best-sellers first and per
    kind."""

    def __init__(self, rng: np.random.Generator, items: int, params: Parameters = DEFAULT_PARAMETERS):
        per_category = np.full(len(CATEGORIES), items // len(CATEGORIES))
        per_category[: items % len(CATEGORIES)] += 1
        self.records: list[dict] = []  # what the shop lists: the simulation's catalog
        self.fields: list[dict] = []  # what item events carry
        self.category: list[int] = []
        self.kind: list[str] = []
        self.brand: list[str] = []
        self.price: list[float] = []
        self.available: list[bool] = []
        self.log_price_ratio: list[float] = []  # log(price / category median)
        popularity: list[float] = []
        for c, category in enumerate(CATEGORIES):
            brand_tier = {b: float(rng.lognormal(0.0, 0.35)) for b in category.brands}
            kind_tier = {k: float(rng.lognormal(0.0, 0.4)) for k in category.kinds}
            for _ in range(int(per_category[c])):
                idx = len(self.records)
                brand = category.brands[int(rng.integers(len(category.brands)))]
                kind = category.kinds[int(rng.integers(len(category.kinds)))]
                raw = category.median_price * brand_tier[brand] * kind_tier[kind] * float(
                    rng.lognormal(0.0, category.price_sigma))
                price = float(math.floor(raw)) + 0.99 if raw >= 5 else round(max(raw, 0.99), 2)
                available = bool(rng.random() < 0.93)
                item_id = f"item-{idx:05d}"
                title = f"{brand.replace('-', ' ').title()} {kind.title()} {int(rng.integers(100, 1000))}"
                self.records.append({"item_id": item_id, "title": title, "category": category.name,
                                     "brand": brand, "kind": kind, "price": price,
                                     "available": available})
                self.fields.append({"item_id": item_id, "price": price, "category": category.name,
                                    "brand": brand, "available": available})
                self.category.append(c)
                self.kind.append(kind)
                self.brand.append(brand)
                self.price.append(price)
                self.available.append(available)
                self.log_price_ratio.append(math.log(price / category.median_price))
                popularity.append(float(rng.lognormal(0.0, 1.2)))  # a few items draw most traffic
        # The latent side, drawn after the listed fields so that a seed lists the same items whatever the model.
        n = len(self.records)
        self.quality = rng.normal(0.0, params.quality_sd, n)
        self.style = rng.standard_normal((n, params.style_dims)) / math.sqrt(params.style_dims)
        # Best-sellers are partly the good items and partly lucky ones.
        popularity = (np.asarray(popularity) * np.exp(params.popularity_quality * self.quality)).tolist()
        self.popularity = popularity
        self.category_of = np.asarray(self.category, dtype=np.int64)
        self.price_ratio = np.asarray(self.log_price_ratio)
        self.brand_names: tuple[str, ...] = tuple(sorted({b for c in CATEGORIES for b in c.brands}))
        self.brand_of = np.asarray([self.brand_names.index(b) for b in self.brand], dtype=np.int64)
        self.item_ids: list[str] = [record["item_id"] for record in self.records]
        self.available_list: list[int] = np.flatnonzero(np.asarray(self.available)).tolist()
        self.category_items: list[list[int]] = [[] for _ in CATEGORIES]
        for i, c in enumerate(self.category):
            self.category_items[c].append(i)
        # Listings show a category best-sellers first; searches match kind (and brand) the same way.
        for c in range(len(CATEGORIES)):
            self.category_items[c].sort(key=lambda i: -popularity[i])
        self.kind_items: dict[tuple[int, str], list[int]] = {}
        for c in range(len(CATEGORIES)):
            for i in self.category_items[c]:
                self.kind_items.setdefault((c, self.kind[i]), []).append(i)

    def ids(self, items: list[int]) -> list[str]:
        """The item ids of items given by index."""
        item_ids = self.item_ids
        return [item_ids[i] for i in items]

    def search(self, category: int, words: list[str]) -> list[int]:
        """Up to 20 items of `category` for a query: its kind and brands matched, under its price cap, cheapest
        first for "cheap" and dearest first for "premium", padded with best-sellers when few match."""
        cat = CATEGORIES[category]
        query = " ".join(words)
        kinds = [k for k in cat.kinds if k in query]
        brands = [b for b in cat.brands if b in words]
        cap = next((float(w[6:]) for w in words if w.startswith("under-")), None)
        pool = self.kind_items.get((category, kinds[0]), []) if kinds else self.category_items[category]
        matches = [i for i in pool
                   if (not brands or self.brand[i] in brands) and (cap is None or self.price[i] <= cap)]
        if "cheap" in words:
            matches.sort(key=lambda i: self.price[i])
        elif "premium" in words:
            matches.sort(key=lambda i: -self.price[i])
        if len(matches) < 5:
            # Too few exact matches: the shop pads the page with the category's best-sellers.
            seen = set(matches)
            matches += [i for i in self.category_items[category] if i not in seen][: 20 - len(matches)]
        return matches[:20]
