"""Shopper simulator: a seeded catalog and shoppers with latent personas, traits and evolving session intents, emitting Tailor events with their ground truth."""

from .simulation import (CATEGORIES, DEFAULT_START, INTENTS, PERSONAS, REFERRAL_SOURCES, TRAITS,
                         Category, Persona, Simulation, simulate)

__all__ = ["CATEGORIES", "DEFAULT_START", "INTENTS", "PERSONAS", "REFERRAL_SOURCES", "TRAITS", "Category", "Persona",
           "Simulation", "simulate"]
