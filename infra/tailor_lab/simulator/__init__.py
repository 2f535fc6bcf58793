"""Shopper simulator: a seeded catalog and shoppers with latent personas, traits and evolving session intents,
emitting Tailor events with their ground truth.

The parts: the catalog (categories, items with a latent quality and style, listings and search), the shoppers
(personas, tastes, traits, profiles, visits), the sessions (intents and the actions they lead to), the choices
(random draws, items picked by their utility to the shopper), the parameters (the choice model written down, with
its calibrated defaults) and the simulation that runs them and puts together the events and the truth. The same
arguments give the same output. calibration compares the simulator with real shops; online lets its shoppers act
on feeds a strategy serves.
"""

from .catalog import CATEGORIES, Category
from .parameters import BUSY_PARAMETERS, DEFAULT_PARAMETERS, Parameters
from .sessions import INTENTS, REFERRAL_SOURCES
from .shoppers import PERSONAS, TRAITS, Persona
from .simulation import DEFAULT_START, Simulation, World, simulate

__all__ = ["BUSY_PARAMETERS", "CATEGORIES", "DEFAULT_PARAMETERS", "DEFAULT_START", "INTENTS", "PERSONAS", "REFERRAL_SOURCES", "TRAITS",
           "Category", "Parameters", "Persona", "Simulation", "World", "simulate"]
