"""How simulated shoppers choose, and every parameter of it: the one place the simulator's model is written down.

Tastes. Each shopper belongs to a persona (shoppers.PERSONAS). A persona prefers some categories (its `categories`
shares), some brands (a preference per brand drawn once for all runs, `persona_brand_sd`), some styles (a point in
a `style_dims`-dimensional space of item attributes, `persona_style_sd`) and a price level (`price_beta`: > 0 likes
items cheap for their category). A shopper's own tastes deviate from the persona's: category shares drawn around
it (Dirichlet), brand preferences (`shopper_brand_sd`), style (`shopper_style_sd`) and price taste (0.5 sd).

Items. Each item has a latent quality (`quality_sd`), a style vector (standard normal per dimension, scaled by
1/sqrt(style_dims)), a brand, a category and a price. The shop lists a category best-sellers first: an item's sales
rank follows its quality (`popularity_quality`) times luck (log-normal).

Utility of item i to shopper u, before the moment's context:

    U(u, i) = category_weight * log(share of i's category in u's tastes) + brand(u, brand of i)
              + style(u) . style(i) + quality_weight * quality(i) - price_beta(u) * log(price / category median)

In a session the shopper's intent adds `intent_bonus` to items of the category they are in; items already viewed
in the session lose `seen_penalty` (they are known), items bought in it lose `bought_penalty`. An examined item is
clicked with probability sigmoid((U + context - click_threshold) / click_temperature): the logistic is the noise.

Looking down a list (position-based model): the item at 0-based position k is examined with probability
examination * (k + 1) ** -examination_decay, where `examination` depends on the surface: a category or search
listing (`listing_examination`), a feed Tailor serves (`feed_examination`), the shop's 3-slot recommendation widget
under an item page (`widget_examination`, which the Open Bandit Dataset's click-through rates calibrate; its three
tiles sit side by side, so attention falls off more slowly along them, by `widget_examination_decay`). The
first item clicked is opened; nothing clicked means the shopper moves on.

Choosing without a list (a promoted link, a direct visit, another item to cart): among the category's items with
probability proportional to popularity ** `navigation_popularity` * exp(U / click_temperature). On a feed
(tailor_lab.simulator.online) a shopper who opened an item goes on down the feed with probability `feed_continue`.

Within a session: exploring moves to a neighbouring category (catalog.NEIGHBOURS) with probability
`neighbour_drift`, else to one drawn from the shopper's tastes; a view goes back to an item already viewed in the
session with probability `revisit` (shoppers return to what they liked, picked by utility); after each action the
session ends with its intent's probability times `session_end_scale`. Time on an item page grows with how much the
shopper likes it (`dwell_utility`): dwell is what a shop sees of a rejection after a click.

Carting and buying: an item is carted with probability sigmoid((U - price_level * log(price / the shop's median
price) - cart_threshold) / click_temperature), else the shopper looks for another (dear items sell less readily
whatever their category); a basket grows to 1 + Poisson(basket * `basket_scale`) lines, a line is of
several units with probability `multi_unit` (3.5 times that for the 2% of whales); checkout pays with
probability min(0.85, `pay_rate` * propensity + 0.05). A shopper's purchase propensity is their
persona's times a log-normal of sd `propensity_sd`. Visits: a persona's sessions per day times `visit_scale`,
times a log-normal of sd `visit_sd` per shopper.

What the events reveal is what a shop could know: impressions of every list rendered (listings, search results,
the widget, feeds), clicks with their position (and feed_id for a feed), views, dwell, carts, purchases. Examination
and utility stay hidden; the truth keeps the widget's impressions and clicks per slot for calibration.

The defaults are calibrated to real shops' statistics (tailor_lab.simulator.calibration, `tailor simulate
calibrate`), never to a model's figure.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUSY_PARAMETERS", "DEFAULT_PARAMETERS", "Parameters"]


@dataclass(frozen=True)
class Parameters:
    """The choice model's parameters (the module's docstring says what each does)."""

    # tastes
    style_dims: int = 4
    persona_brand_sd: float = 0.8
    shopper_brand_sd: float = 0.4
    persona_style_sd: float = 1.2
    shopper_style_sd: float = 0.5
    category_weight: float = 1.0
    # items
    quality_sd: float = 0.6
    quality_weight: float = 1.0
    popularity_quality: float = 1.0
    # choosing from a list
    click_threshold: float = 1.0
    click_temperature: float = 1.0
    intent_bonus: float = 1.0
    seen_penalty: float = 1.5
    bought_penalty: float = 6.0
    examination_decay: float = 0.8
    listing_examination: float = 0.9
    feed_examination: float = 0.9
    feed_continue: float = 0.5
    widget_examination: float = 0.06
    widget_examination_decay: float = 0.3
    widget_slots: int = 3
    navigation_popularity: float = 0.5
    # within a session
    neighbour_drift: float = 0.5
    revisit: float = 0.2
    session_end_scale: float = 2.5
    dwell_utility: float = 0.15
    # carting, buying and visiting
    cart_threshold: float = 0.0
    price_level: float = 5.0
    basket_scale: float = 0.3
    multi_unit: float = 0.04
    pay_rate: float = 0.08
    visit_scale: float = 0.045
    visit_sd: float = 0.8
    propensity_sd: float = 0.4

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.style_dims < 1:
            raise ValueError("style_dims must be at least 1")
        if self.click_temperature <= 0:
            raise ValueError("click_temperature must be positive")


DEFAULT_PARAMETERS = Parameters()
# Not calibrated: shoppers who visit daily, stay longer and buy readily, as the simulator's shoppers did before its
# calibration, for tests that need purchases in both halves of a few days of a few dozen shoppers.
BUSY_PARAMETERS = Parameters(visit_scale=1.0, session_end_scale=1.0, pay_rate=0.2, price_level=0.0)
