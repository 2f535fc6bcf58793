"""Shopper simulator: a seeded catalog and shoppers with latent personas, traits and evolving session intents,
emitting Tailor events with their ground truth.

The parts: the catalog (categories, items, listings and search), the shoppers (personas, tastes, traits, profiles,
visits), the sessions (intents and the actions they lead to), the choices (random draws, items picked) and the
simulation that runs them and puts together the events and the truth. The same arguments give the same output.
"""

from .catalog import CATEGORIES, Category
from .sessions import INTENTS, REFERRAL_SOURCES
from .shoppers import PERSONAS, TRAITS, Persona
from .simulation import DEFAULT_START, Simulation, simulate

__all__ = ["CATEGORIES", "DEFAULT_START", "INTENTS", "PERSONAS", "REFERRAL_SOURCES", "TRAITS", "Category", "Persona",
           "Simulation", "simulate"]
